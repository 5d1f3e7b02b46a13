using Microsoft.Extensions.Logging;
using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Coordinator.Core;

/// <summary>Reads: where a committed object lives, and streaming it from a live replica with failover.</summary>
public sealed partial class ObjectStore
{
    /// <summary>How long a reported corrupt replica is tried last (repair replaces it well within that).</summary>
    private static readonly TimeSpan CorruptHintLifetime = TimeSpan.FromHours(1);

    /// <summary>Replicas a volume reported as failing their checksum ("node\nkey" → when); reads try them last.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, DateTimeOffset> _corrupt = new();

    /// <summary>The committed object and its readable replicas (not down; reported-corrupt ones last).</summary>
    public StoreResult<ReadPlan> Locate(byte[] key)
    {
        var meta = Head(key);
        if (meta is null)
        {
            return new StoreError(StoreErrorKind.NotFound, $"key {KeyCodec.Display(key)} not found");
        }
        var candidates = meta.Replicas
            .Select(id => (Id: id, Status: nodes.StatusOf(id), Url: nodes.UrlOf(id)))
            .Where(c => c.Status != NodeStatus.Down && c.Url is not null)
            .OrderBy(c => IsMarkedCorrupt(key, c.Id))
            .ThenBy(c => c.Status)
            .Select(c => new ReplicaLocation(c.Id, c.Url!, nodes.ReadUrlOf(c.Id), nodes.HandoffSocketOf(c.Id)))
            .ToList();
        return new ReadPlan(key, meta, candidates);
    }

    /// <summary>
    /// A URL a client may GET the replica at directly (signed when the cluster has a secret): its sendfile read
    /// port for a plain full GET, its main port otherwise (ranges, conditionals, no read port).
    /// </summary>
    public string DirectUrl(ReadPlan plan, ReplicaLocation replica, bool plainGet = false) =>
        (plainGet ? replica.ReadUrl ?? replica.Url : replica.Url) + "/" + KeyCodec.UrlPath(plan.Key)
        + "?" + NodeHttp.VersionQuery(plan.Meta.Version) + Presign(plan.Key);

    /// <summary>
    /// Streams the object (or a range) from the first replica that serves it into sink. Full bodies are
    /// checked against the committed hash with the last chunk held back, so a client never sees a normal
    /// end of wrong bytes; a replica failing before anything was sent is replaced by the next one.
    /// </summary>
    public async Task<StoreError?> ReadAsync(ReadPlan plan, ByteRange? range, IObjectSink sink, CancellationToken ct)
    {
        if (plan.Candidates.Count == 0)
        {
            return new StoreError(StoreErrorKind.Unavailable, $"no live replica of {KeyCodec.Display(plan.Key)} (replicas: {string.Join(", ", plan.Meta.Replicas)})");
        }
        var absent = 0;
        foreach (var c in plan.Candidates)
        {
            // Sizes first: taking the raw response checks the connection's socket (two system calls).
            var raw = range is null && plan.Meta.Size >= Math.Min(SocketHandoff.MinBytes, SpliceRelay.MinBytes) ? sink.Raw : null;
            if (raw is not null && c.HandoffSocket is { } socketPath && plan.Meta.Size >= SocketHandoff.MinBytes)
            {
                var handed = await TryHandOffAsync(socketPath, plan, sink, raw);
                if (handed == RelayOutcome.Corrupt)
                {
                    continue; // nothing sent; the volume reported its bad copy (reads try it last from now on)
                }
                if (handed != RelayOutcome.NotStarted)
                {
                    return null;
                }
            }
            if (raw is not null && plan.Meta.Size >= SpliceRelay.MinBytes && c.ReadUrl is { } readUrl
                && await TryRelayRawAsync(readUrl, plan, sink, raw, ct))
            {
                return null;
            }
            // A full read goes to the replica's sendfile read port (the volume's cheapest path); ranges to its main port.
            switch (await TryReadAsync(range is null ? c.ReadUrl ?? c.Url : c.Url, plan.Key, plan.Meta, range, sink, ct))
            {
                case ReplicaRead.Served:
                    return null;
                case ReplicaRead.Absent:
                    absent++; // no blob of this version there: not a node failure
                    continue;
            }
            nodes.ReportFailure(c.NodeId);
            if (sink.HasStarted)
            {
                return null;
            }
        }
        // Every replica lacks this version and the key now has another one (or none): it changed since the lookup,
        // and it was absent in between, so 404 is the answer. The same version still committed is a real failure.
        if (absent == plan.Candidates.Count && Head(plan.Key) is var now && now?.Version != plan.Meta.Version)
        {
            return new StoreError(StoreErrorKind.NotFound, $"key {KeyCodec.Display(plan.Key)} not found (deleted or replaced while it was being read)");
        }
        return new StoreError(StoreErrorKind.Unavailable, "every replica failed to serve the object");
    }

    /// <summary>Records a volume's report that its copy of key is corrupt (it has quarantined it; repair re-copies).</summary>
    public void MarkCorrupt(byte[] key, string nodeId)
    {
        logger.LogWarning("volume {Node} reports a corrupt copy of {Key}; reads go to other replicas, run repair", nodeId, KeyCodec.Display(key));
        Metrics.CorruptReports.Inc();
        _corrupt[CorruptHint(key, nodeId)] = DateTimeOffset.UtcNow;
    }

    private static string CorruptHint(byte[] key, string nodeId) => nodeId + "\n" + KeyCodec.Encode(key);

    private bool IsMarkedCorrupt(byte[] key, string nodeId)
    {
        if (_corrupt.IsEmpty)
        {
            return false;
        }
        var hint = CorruptHint(key, nodeId);
        if (!_corrupt.TryGetValue(hint, out var at))
        {
            return false;
        }
        if (DateTimeOffset.UtcNow - at < CorruptHintLifetime)
        {
            return true;
        }
        _corrupt.TryRemove(new KeyValuePair<string, DateTimeOffset>(hint, at)); // expired: keep the map small
        return false;
    }

    /// <summary>exp/sig query parameters (after another one) for a volume URL when the cluster has a secret (volumes refuse unsigned reads then).</summary>
    private string Presign(byte[] key)
    {
        if (string.IsNullOrEmpty(secret))
        {
            return "";
        }
        var exp = DateTimeOffset.UtcNow.Add(PresignLifetime).ToUnixTimeSeconds();
        return $"&exp={exp}&sig={ClusterAuth.Sign(secret, KeyCodec.Encode(key), exp)}";
    }

    /// <summary>
    /// A full read handed to the replica on this host (<see cref="SocketHandoff"/>): true when the response went
    /// out (whole, or cut); false when the volume declined before the first byte and the read should be relayed.
    /// </summary>
    private async Task<RelayOutcome> TryHandOffAsync(string socketPath, ReadPlan plan, IObjectSink sink, IRawResponse raw)
    {
        sink.Begin(200, plan.Meta.Size, null);
        var (outcome, error) = await SocketHandoff.HandOffAsync(socketPath, ClusterSecret, plan.Key, plan.Meta.Version, plan.Meta.Etag, plan.Meta.Size, raw);
        _ = Finish(Metrics.ReadHandoffs, "handed to " + socketPath, outcome, error, plan, raw);
        return outcome;
    }

    /// <summary>
    /// A full read spliced from the replica's read port to the client's socket (no user-space copy): true when
    /// the response went out (whole, or cut because the volume or the client failed); false when nothing
    /// was sent and the ordinary path should serve it (the volume did not answer a verified 200 of this
    /// version, the head cannot be sent raw, or the relay is busy or off).
    /// </summary>
    private async Task<bool> TryRelayRawAsync(string readUrl, ReadPlan plan, IObjectSink sink, IRawResponse raw, CancellationToken ct)
    {
        sink.Begin(200, plan.Meta.Size, null); // the head is built from the response as the front end and Begin set it
        var (outcome, error) = await SpliceRelay.RelayAsync(NodeHttp.ObjectUri(readUrl, plan.Key, plan.Meta.Version), ClusterSecret, plan.Meta.Etag, plan.Meta.Size, raw, ct);
        return Finish(Metrics.SpliceRelays, "spliced from " + readUrl, outcome, error, plan, raw);
    }

    private string? ClusterSecret => volumes.Http.DefaultRequestHeaders.TryGetValues(ClusterAuth.Header, out var values) ? values.FirstOrDefault() : null;

    /// <summary>Counts a raw read's outcome; true when the response went out (whole or cut) and the connection is done.</summary>
    private bool Finish(Prometheus.Counter counter, string how, RelayOutcome outcome, string? error, ReadPlan plan, IRawResponse raw)
    {
        counter.WithLabels(outcome switch
        {
            RelayOutcome.Sent => "sent",
            RelayOutcome.SourceCut => "source_cut",
            RelayOutcome.ClientGone => "client_gone",
            RelayOutcome.Corrupt => "corrupt",
            _ => "declined",
        }).Inc();
        if (outcome is RelayOutcome.NotStarted or RelayOutcome.Corrupt)
        {
            logger.LogDebug("proxy GET of {Key} not {How}: {Reason}", KeyCodec.Display(plan.Key), how, error);
            return false;
        }
        if (outcome == RelayOutcome.Sent)
        {
            raw.Sent(plan.Meta.Size); // written behind the server's back: it answers with a stand-in, or closes
        }
        else
        {
            raw.Close(); // a cut response: the server must not write to this connection again
        }
        if (outcome == RelayOutcome.SourceCut)
        {
            Metrics.VerifiedReadFailures.Inc();
            logger.LogError("proxy GET of {Key} ({How}) cut after the head: {Error}", KeyCodec.Display(plan.Key), how, error);
        }
        else if (outcome == RelayOutcome.ClientGone)
        {
            logger.LogDebug("proxy GET of {Key}: client gone ({Error})", KeyCodec.Display(plan.Key), error);
        }
        return true;
    }

    /// <summary>How one replica's read ended.</summary>
    private enum ReplicaRead
    {
        /// <summary>It served (or the client saw a cut).</summary>
        Served,

        /// <summary>It failed before the client saw anything: try the next replica.</summary>
        Failed,

        /// <summary>It has no blob of the committed version (404): try the next replica.</summary>
        Absent,
    }

    private async Task<ReplicaRead> TryReadAsync(string url, byte[] key, ObjectMeta meta, ByteRange? range, IObjectSink sink, CancellationToken ct)
    {
        var target = NodeHttp.ObjectUri(url, key, meta.Version); // a blob of another version is not this object
        HttpResponseMessage resp;
        while (true)
        {
            using var req = new HttpRequestMessage(HttpMethod.Get, target);
            if (range is { } r)
            {
                req.Headers.TryAddWithoutValidation("Range", r.Header);
            }
            try
            {
                resp = await volumes.Http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, ct);
            }
            catch (HttpRequestException)
            {
                return ReplicaRead.Failed;
            }
            // The read port hands what it does not serve itself (a blob not in memory, say) to the volume's main
            // port with a 307: follow it once.
            if (resp.StatusCode != System.Net.HttpStatusCode.TemporaryRedirect || resp.Headers.Location is not { IsAbsoluteUri: true } next || target.Port == next.Port)
            {
                break;
            }
            resp.Dispose();
            target = next;
        }
        using (resp)
        {
            if (resp.StatusCode == System.Net.HttpStatusCode.NotFound)
            {
                return ReplicaRead.Absent;
            }
            if ((int)resp.StatusCode >= 500)
            {
                return ReplicaRead.Failed;
            }
            sink.Begin((int)resp.StatusCode, resp.Content.Headers.ContentLength, resp.Content.Headers.ContentRange?.ToString());
            await using var body = await resp.Content.ReadAsStreamAsync(ct);
            var full = resp.StatusCode == System.Net.HttpStatusCode.OK;
            // A volume that verifies the read itself holds its last chunk back until the bytes match this very
            // etag (or cuts the connection), so a complete body from it is a verified one: no second hash here.
            var verifiedThere = full && resp.Headers.TryGetValues(NodeHttp.VerifiedHeader, out _)
                && resp.Headers.ETag?.Tag == $"\"{meta.Etag}\"";
            // Otherwise full bodies are checked here against the committed etag, the last chunk held back until it matches.
            var copy = full && !verifiedThere
                ? await StreamCopier.CopyVerifiedAsync(body, sink.Body, meta.Etag, ct)
                : sink.Writer is { } writer
                    ? await StreamCopier.RelayAsync(body, writer, ct) // verified there, or a range (no etag to check)
                    : await StreamCopier.CopyAsync(body, sink.Body, ct, hash: false);
            if (verifiedThere && copy.Ok)
            {
                copy = copy with { Etag = meta.Etag };
            }
            if (!copy.Ok || (full && (copy.Bytes != meta.Size || copy.Etag != meta.Etag)))
            {
                // Never end a response that carried wrong bytes normally: the client must see a failure.
                Metrics.VerifiedReadFailures.Inc(ct.IsCancellationRequested ? 0 : 1); // a client hanging up is no integrity failure
                logger.LogError("proxy GET of {Key} from {Url}: {Bytes} bytes, etag {Etag}, expected {Size}/{Want}", KeyCodec.Display(key), url, copy.Bytes, copy.Etag, meta.Size, meta.Etag);
                if (!sink.HasStarted && !ct.IsCancellationRequested)
                {
                    // Nothing reached the client yet (the held-back chunk was all there was): try the next replica.
                    sink.Reset();
                    return ReplicaRead.Failed;
                }
                sink.Abort();
            }
            return ReplicaRead.Served;
        }
    }
}
