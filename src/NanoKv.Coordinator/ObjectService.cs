using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Coordinator;

/// <summary>Tunables of the data path.</summary>
public sealed record DataPathSettings
{
    public int Replicas { get; init; } = 3;

    /// <summary>Proxy GET bodies through the coordinator instead of redirecting to a volume.</summary>
    public bool ProxyGet { get; init; }

    /// <summary>How long control calls (prepare/commit/abort/delete) keep retrying transient failures.</summary>
    public TimeSpan RetryTimeBox { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Deadline of one control call attempt (a stalled volume must not hang a PUT).</summary>
    public TimeSpan AttemptTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>A replica that accepts no upload bytes (or does not answer after the last byte) for this long fails the PUT.</summary>
    public TimeSpan UploadIdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long recovery waits for an unreachable replica before treating its commit as failed.</summary>
    public TimeSpan RecoveryGiveUp { get; init; } = TimeSpan.FromMinutes(10);
}

/// <summary>
/// PUT/GET/DELETE of objects: the coordinator side of prepare → upload → verify → commit, with abort on
/// any failure before commit and rollback of partial commits, so a key is either fully written or absent.
/// </summary>
public sealed class ObjectService(MetaStore store, NodeRegistry nodes, VolumeClient volumes, VersionClock clock, DataPathSettings settings, string? secret, ILogger logger)
{
    /// <summary>How long a redirect's presigned volume URL stays valid.</summary>
    private static readonly TimeSpan PresignLifetime = TimeSpan.FromMinutes(5);

    /// <summary>How long a reported corrupt replica is tried last (repair replaces it well within that).</summary>
    private static readonly TimeSpan CorruptHintLifetime = TimeSpan.FromHours(1);

    /// <summary>Replicas a volume reported as failing their checksum ("node\nkey" → when); GETs try them last.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, DateTimeOffset> _corrupt = new();

    public DataPathSettings Settings => settings;

    /// <summary>Write-once PUT streamed to every replica at once.</summary>
    public async Task<IResult> PutAsync(HttpContext ctx, byte[] key)
    {
        ServerHost.AllowLargeBody(ctx);
        var length = ctx.Request.ContentLength;
        if (length > ServerHost.MaxObjectBytes)
        {
            return ApiError.Result(413, ApiError.Codes.InvalidArgument, $"objects are limited to {ServerHost.MaxObjectBytes} bytes");
        }
        var n = settings.Replicas;
        ObjectMeta? previous;
        ObjectMeta pending;
        List<string> ranked;
        using (await store.LockAsync(key))
        {
            previous = store.Get(key);
            if (previous?.State == ObjectState.Committed)
            {
                return ApiError.Conflict(ApiError.Codes.KeyExists, $"key {KeyCodec.Display(key)} already exists; objects are write-once (DELETE it first)");
            }
            if (previous?.State == ObjectState.Pending)
            {
                return ApiError.Conflict(ApiError.Codes.WriteInProgress, $"another write of key {KeyCodec.Display(key)} is in progress");
            }
            var alive = nodes.AliveIds();
            if (alive.Count < n)
            {
                return ApiError.Unavailable(ApiError.Codes.InsufficientNodes, $"{alive.Count} alive volumes, {n} replicas required");
            }
            ranked = Placement.Rank(key, alive);
            var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            pending = new ObjectMeta
            {
                State = ObjectState.Pending,
                Replicas = ranked.GetRange(0, n),
                UploadId = Guid.NewGuid().ToString("N"),
                Version = clock.Next(),
                CreatedMs = now,
                UpdatedMs = now,
            };
            store.Put(key, pending);
        }

        var prepared = new List<string>();
        var committed = false;
        try
        {
            // Prepare: reserve an upload on N nodes; a node that fails is replaced by the next in HRW order.
            var failures = new List<string>();
            var results = await Task.WhenAll(pending.Replicas.Select(id => PrepareAsync(id, key, pending.UploadId, length)));
            var spare = new Queue<string>(ranked.Skip(n));
            for (var i = 0; i < results.Length; i++)
            {
                var id = pending.Replicas[i];
                if (results[i].Ok)
                {
                    prepared.Add(id);
                    continue;
                }
                failures.Add($"{id}: {results[i].Describe()}");
                if (results[i].Status == 507 && spare.Count == 0)
                {
                    await AbortAsync(key, pending, prepared, previous);
                    return ApiError.Result(507, ApiError.Codes.InsufficientStorage, string.Join("; ", failures));
                }
                while (spare.TryDequeue(out var next))
                {
                    var r = await PrepareAsync(next, key, pending.UploadId, length);
                    if (r.Ok)
                    {
                        prepared.Add(next);
                        break;
                    }
                    failures.Add($"{next}: {r.Describe()}");
                }
            }
            if (prepared.Count < n)
            {
                await AbortAsync(key, pending, prepared, previous);
                return ApiError.Unavailable(ApiError.Codes.InsufficientNodes, $"could not prepare {n} replicas: {string.Join("; ", failures)}");
            }
            if (!prepared.SequenceEqual(pending.Replicas))
            {
                pending = pending with { Replicas = [.. prepared] };
                store.Put(key, pending);
            }

            // Upload: one read of the client body, hashed once, streamed to all replicas in parallel.
            var (copy, uploads) = await UploadAsync(ctx, key, pending, length);
            if (copy.Status == CopyStatus.InputError || copy.Status == CopyStatus.Canceled || ctx.RequestAborted.IsCancellationRequested)
            {
                await AbortAsync(key, pending, prepared, previous);
                return copy.Error is InvalidDataException
                    ? ApiError.Result(413, ApiError.Codes.SizeMismatch, copy.Error.Message)
                    : ApiError.BadRequest(ApiError.Codes.UploadIncomplete, $"request body ended after {copy.Bytes} bytes: {copy.Error?.Message}");
            }
            // One replica's failure cancels the others; report the cause (a full disk, then any definite
            // answer) rather than the cancellations it triggered.
            var failedUpload = Enumerable.Range(0, uploads.Length).Where(i => !uploads[i].Ok)
                .OrderByDescending(i => uploads[i].Status == 507).ThenByDescending(i => uploads[i].Status != 0).FirstOrDefault(-1);
            if (failedUpload >= 0)
            {
                await AbortAsync(key, pending, prepared, previous);
                var status = uploads[failedUpload].Status is 507 ? 507 : 503;
                return ApiError.Result(status, status == 507 ? ApiError.Codes.InsufficientStorage : ApiError.Codes.ReplicaFailed,
                    $"upload to {prepared[failedUpload]} failed: {uploads[failedUpload].Describe()}");
            }
            if (!copy.Ok)
            {
                await AbortAsync(key, pending, prepared, previous);
                return ApiError.Unavailable(ApiError.Codes.ReplicaFailed, $"upload failed: {copy.Error?.Message}");
            }
            if (length is long want && copy.Bytes != want)
            {
                await AbortAsync(key, pending, prepared, previous);
                return ApiError.BadRequest(ApiError.Codes.UploadIncomplete, $"received {copy.Bytes} bytes, Content-Length said {want}");
            }
            // Verify: every replica must have fsync'd exactly the bytes we read.
            for (var i = 0; i < uploads.Length; i++)
            {
                var got = uploads[i].As<UploadResult>();
                if (got is null || got.Size != copy.Bytes || !string.Equals(got.Etag, copy.Etag, StringComparison.Ordinal))
                {
                    await AbortAsync(key, pending, prepared, previous);
                    return ApiError.Result(502, ApiError.Codes.ChecksumMismatch,
                        $"replica {prepared[i]} stored {got?.Size} bytes with etag {got?.Etag}; expected {copy.Bytes} bytes with etag {copy.Etag}");
                }
            }
            // Recorded before commit so a coordinator crash during commit can roll forward. Not fsync'd: if it
            // is lost, recovery rolls the (never acknowledged) write back instead.
            pending = pending with { Size = copy.Bytes, Etag = copy.Etag };
            store.Put(key, pending, sync: false);

            // Commit: not cancellable by the client from here on; a key must end fully written or absent.
            committed = true;
            var commits = await Task.WhenAll(prepared.Select(id =>
                volumes.CommitAsync(nodes.UrlOf(id)!, key, pending.UploadId, pending.Version, CancellationToken.None)));
            if (commits.All(c => c.Ok))
            {
                var meta = pending with { State = ObjectState.Committed, UpdatedMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() };
                store.Put(key, meta);
                ctx.Response.Headers.ETag = $"\"{meta.Etag}\"";
                return Results.Json(new { key = KeyCodec.Encode(key), size = meta.Size, etag = meta.Etag, replicas = meta.Replicas, version = meta.Version }, statusCode: 201);
            }
            var failed = prepared.Select((id, i) => (Id: id, Call: commits[i])).Where(x => !x.Call.Ok).Select(x => $"{x.Id}: {x.Call.Describe()}");
            await RollBackAsync(key, pending, prepared.Where((_, i) => commits[i].Ok).ToList(), prepared.Where((_, i) => !commits[i].Ok).ToList());
            return ApiError.Unavailable(ApiError.Codes.ReplicaFailed, $"commit failed on {string.Join("; ", failed)}; the write was rolled back");
        }
        catch (Exception ex) when (!committed)
        {
            logger.LogError(ex, "PUT {Key} failed before commit", KeyCodec.Display(key));
            await AbortAsync(key, pending, prepared, previous);
            throw;
        }
    }

    /// <summary>GET: 302 to a live replica (the coordinator stays off the data path) or, in proxy mode, stream it.</summary>
    public async Task<IResult> GetAsync(HttpContext ctx, byte[] key, bool headOnly)
    {
        var meta = store.Get(key);
        if (meta is null || meta.State != ObjectState.Committed)
        {
            return ApiError.NotFoundResult($"key {KeyCodec.Display(key)} not found");
        }
        var candidates = meta.Replicas
            .Select(id => (Id: id, Status: nodes.StatusOf(id), Url: nodes.UrlOf(id)))
            .Where(c => c.Status != NodeStatus.Down && c.Url is not null)
            .OrderBy(c => IsMarkedCorrupt(key, c.Id))
            .ThenBy(c => c.Status)
            .ToList();
        ctx.Response.Headers.ETag = $"\"{meta.Etag}\"";
        if (headOnly)
        {
            ctx.Response.ContentLength = meta.Size;
            ctx.Response.Headers.AcceptRanges = "bytes";
            ctx.Response.ContentType = "application/octet-stream";
            return Results.Empty;
        }
        if (candidates.Count == 0)
        {
            return ApiError.Unavailable(ApiError.Codes.Unavailable, $"no live replica of {KeyCodec.Display(key)} (replicas: {string.Join(", ", meta.Replicas)})");
        }
        // The keys "." and ".." cannot survive a redirect: HTTP clients fold them into "/" before asking the volume.
        var proxy = settings.ProxyGet || ctx.Request.Query["proxy"] is var q && (q == "1" || q == "true") || key is [(byte)'.'] or [(byte)'.', (byte)'.'];
        if (!proxy)
        {
            return Results.Redirect(candidates[0].Url + "/" + KeyCodec.UrlPath(key) + Presign(key));
        }
        foreach (var c in candidates)
        {
            if (await TryProxyAsync(ctx, c.Url!, key, meta))
            {
                return Results.Empty;
            }
            nodes.ReportFailure(c.Id);
        }
        return ctx.Response.HasStarted ? Results.Empty : ApiError.Unavailable(ApiError.Codes.Unavailable, "every replica failed to serve the object");
    }

    /// <summary>Records a volume's report that its copy of key is corrupt (it has quarantined it; repair re-copies).</summary>
    public void MarkCorrupt(byte[] key, string nodeId)
    {
        logger.LogWarning("volume {Node} reports a corrupt copy of {Key}; reads go to other replicas, run repair", nodeId, KeyCodec.Display(key));
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

    /// <summary>exp/sig query for a volume URL when the cluster has a secret (volumes refuse unsigned reads then).</summary>
    private string Presign(byte[] key)
    {
        if (string.IsNullOrEmpty(secret))
        {
            return "";
        }
        var exp = DateTimeOffset.UtcNow.Add(PresignLifetime).ToUnixTimeSeconds();
        return $"?exp={exp}&sig={ClusterAuth.Sign(secret, KeyCodec.Encode(key), exp)}";
    }

    /// <summary>DELETE: tombstone first (the key is gone from then on), then delete on every replica.</summary>
    public async Task<IResult> DeleteAsync(byte[] key, CancellationToken ct)
    {
        ObjectMeta tomb;
        using (await store.LockAsync(key))
        {
            var meta = store.Get(key);
            // A pending write is not visible yet: this DELETE linearizes before it.
            if (meta is null || meta.State != ObjectState.Committed)
            {
                return Results.NoContent();
            }
            tomb = meta with { State = ObjectState.Tombstoned, Version = clock.Next(), UpdatedMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() };
            store.Put(key, tomb);
        }
        await FanOutDeleteAsync(key, tomb.Replicas, tomb.Version);
        return Results.NoContent();
    }

    /// <summary>Re-sends deletes that missed a replica, once every replica of the key is alive again.</summary>
    public async Task FinishOwedDeletesAsync(CancellationToken ct)
    {
        foreach (var key in store.OwedDeleteKeys())
        {
            var meta = store.Get(key);
            if (meta is not { State: ObjectState.Tombstoned })
            {
                store.ClearDeleteOwed(key); // written again since: the old delete is moot
                continue;
            }
            if (meta.Replicas.Any(id => nodes.StatusOf(id) != NodeStatus.Alive || nodes.UrlOf(id) is null))
            {
                continue;
            }
            var results = await Task.WhenAll(meta.Replicas.Select(id => volumes.DeleteAsync(nodes.UrlOf(id)!, key, meta.Version, ct)));
            if (results.All(r => r.Ok))
            {
                store.ClearDeleteOwed(key);
                logger.LogInformation("finished the delete of {Key} on every replica", KeyCodec.Display(key));
            }
        }
    }

    /// <summary>
    /// Sends deletes (volume tombstones) to the replicas; the ones it misses are owed (<see cref="FinishOwedDeletesAsync"/>).
    /// If none of them could record it, the tombstone is written to other live nodes too, so a rebuild from
    /// volumes still sees the delete.
    /// </summary>
    private async Task FanOutDeleteAsync(byte[] key, IReadOnlyList<string> replicas, long version)
    {
        // Down nodes are skipped rather than retried for the whole time box: FinishOwedDeletesAsync does it later.
        var results = await Task.WhenAll(replicas.Select(id => nodes.UrlOf(id) is string url && nodes.StatusOf(id) != NodeStatus.Down
            ? volumes.DeleteAsync(url, key, version, CancellationToken.None)
            : Task.FromResult(new CallResult(false, 0, "node down or unknown", false))));
        var ok = results.Count(r => r.Ok);
        if (ok == 0)
        {
            var others = nodes.AliveIds().Except(replicas).Take(Math.Max(1, replicas.Count));
            await Task.WhenAll(others.Select(id => volumes.DeleteAsync(nodes.UrlOf(id)!, key, version, CancellationToken.None)));
        }
        if (ok < replicas.Count)
        {
            store.MarkDeleteOwed(key);
            logger.LogWarning("delete of {Key} reached {Ok}/{N} replicas; retried when they are back", KeyCodec.Display(key), ok, replicas.Count);
        }
    }

    /// <summary>
    /// Resolves writes left pending by a crash: roll forward when every replica committed, otherwise
    /// roll back. Keys whose replicas cannot be reached are retried until RecoveryGiveUp.
    /// </summary>
    public async Task RecoverPendingAsync(CancellationToken ct)
    {
        var started = DateTimeOffset.UtcNow;
        var keys = store.PendingKeys();
        while (keys.Count > 0 && !ct.IsCancellationRequested)
        {
            var giveUp = DateTimeOffset.UtcNow - started > settings.RecoveryGiveUp;
            var left = new List<byte[]>();
            foreach (var key in keys)
            {
                if (!await TryRecoverAsync(key, giveUp, ct))
                {
                    left.Add(key);
                }
            }
            keys = left;
            if (keys.Count > 0)
            {
                await Task.Delay(TimeSpan.FromSeconds(2), ct);
            }
        }
    }

    private async Task<bool> TryRecoverAsync(byte[] key, bool giveUp, CancellationToken ct)
    {
        var meta = store.Get(key);
        if (meta is null || meta.State != ObjectState.Pending)
        {
            return true;
        }
        var states = new Dictionary<string, string>();
        foreach (var id in meta.Replicas)
        {
            var url = nodes.UrlOf(id);
            var r = url is null ? null : await volumes.UploadStatusAsync(url, meta.UploadId, ct);
            var state = r is { Ok: true } ? r.As<UploadStatus>()?.State ?? "unknown" : "unreachable";
            if (state == "unknown" && url is not null)
            {
                // The commit marker is not fsync'd; the blob stamped with this write's version is the durable proof.
                var info = await volumes.BlobInfoAsync(url, key, false, ct);
                if (info.Ok && info.As<BlobInfo>() is { Exists: true } b && b.Version == meta.Version && b.Size == meta.Size)
                {
                    state = "committed";
                }
            }
            states[id] = state;
        }
        if (states.Values.Contains("unreachable") && !giveUp)
        {
            return false;
        }
        var committedOn = states.Where(s => s.Value == "committed").Select(s => s.Key).ToList();
        if (committedOn.Count == meta.Replicas.Count && meta.Etag.Length > 0)
        {
            store.Put(key, meta with { State = ObjectState.Committed, UpdatedMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() });
            logger.LogInformation("recovered pending {Key}: rolled forward", KeyCodec.Display(key));
            return true;
        }
        await RollBackAsync(key, meta, committedOn, meta.Replicas.Except(committedOn).ToList());
        logger.LogInformation("recovered pending {Key}: rolled back ({States})", KeyCodec.Display(key), string.Join(", ", states.Select(s => $"{s.Key}={s.Value}")));
        return true;
    }

    /// <summary>
    /// Undoes a partially committed write: abort where it did not commit, tombstone the key and delete it
    /// wherever it did — or may have: a replica whose abort fails (unreachable, or "already committed"
    /// because its commit answer was lost) is treated as committed. Deletes that miss a replica are owed.
    /// </summary>
    private async Task RollBackAsync(byte[] key, ObjectMeta pending, List<string> committedOn, List<string> others)
    {
        var aborts = await Task.WhenAll(others.Select(id => nodes.UrlOf(id) is string url
            ? volumes.AbortAsync(url, pending.UploadId, CancellationToken.None)
            : Task.FromResult(new CallResult(false, 0, "unknown node", false))));
        var holders = committedOn.Concat(others.Where((_, i) => !aborts[i].Ok)).ToList();
        if (holders.Count == 0)
        {
            store.Remove(key);
            return;
        }
        logger.LogWarning("rolling back {Key}: deleting it on {Holders}", KeyCodec.Display(key), string.Join(", ", holders));
        var version = clock.Next();
        store.Put(key, pending with { State = ObjectState.Tombstoned, Version = version, Replicas = holders, UpdatedMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() });
        await FanOutDeleteAsync(key, holders, version);
    }

    private async Task AbortAsync(byte[] key, ObjectMeta pending, List<string> prepared, ObjectMeta? previous)
    {
        await Task.WhenAll(prepared.Select(id => volumes.AbortAsync(nodes.UrlOf(id)!, pending.UploadId, CancellationToken.None)));
        if (previous is null)
        {
            store.Remove(key);
        }
        else
        {
            store.Put(key, previous);
        }
    }

    private async Task<CallResult> PrepareAsync(string id, byte[] key, string uploadId, long? length)
    {
        var url = nodes.UrlOf(id);
        if (url is null)
        {
            return new CallResult(false, 0, "unknown node", false);
        }
        var r = await volumes.PrepareAsync(url, key, uploadId, length, CancellationToken.None);
        if (!r.Ok && r.Status == 0)
        {
            nodes.ReportFailure(id);
        }
        return r;
    }

    private async Task<(CopyResult Copy, CallResult[] Uploads)> UploadAsync(HttpContext ctx, byte[] key, ObjectMeta pending, long? length)
    {
        var targets = pending.Replicas;
        var broadcast = new Broadcast(targets.Count, settings.UploadIdleTimeout);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        var uploads = targets.Select((id, i) => Task.Run(async () =>
        {
            var r = await volumes.UploadAsync(nodes.UrlOf(id)!, pending.UploadId, broadcast.ContentFor(i, length), cts.Token);
            if (!r.Ok)
            {
                broadcast.Fail(i, new IOException(r.Describe()));
                await cts.CancelAsync(); // one failed replica fails the PUT: stop the others
            }
            return r;
        })).ToArray();
        var copy = await broadcast.PumpAsync(ctx.Request.Body, length ?? ServerHost.MaxObjectBytes, cts.Token);
        if (!copy.Ok)
        {
            await cts.CancelAsync();
        }
        else
        {
            cts.CancelAfter(settings.UploadIdleTimeout); // each volume still has to fsync and answer
        }
        var results = await Task.WhenAll(uploads);
        if (copy.Status == CopyStatus.Canceled && !ctx.RequestAborted.IsCancellationRequested)
        {
            copy = copy with { Status = CopyStatus.OutputError };
        }
        return (copy, results);
    }

    private async Task<bool> TryProxyAsync(HttpContext ctx, string url, byte[] key, ObjectMeta meta)
    {
        using var req = new HttpRequestMessage(HttpMethod.Get, NodeHttp.ObjectUri(url, key));
        var range = ctx.Request.Headers.Range.ToString();
        if (range.Length > 0)
        {
            req.Headers.TryAddWithoutValidation("Range", range);
        }
        HttpResponseMessage resp;
        try
        {
            resp = await volumes.Http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, ctx.RequestAborted);
        }
        catch (HttpRequestException)
        {
            return false;
        }
        using (resp)
        {
            if ((int)resp.StatusCode >= 500 || resp.StatusCode == System.Net.HttpStatusCode.NotFound)
            {
                return false;
            }
            ctx.Response.StatusCode = (int)resp.StatusCode;
            ctx.Response.ContentLength = resp.Content.Headers.ContentLength;
            ctx.Response.ContentType = "application/octet-stream";
            ctx.Response.Headers.AcceptRanges = "bytes";
            if (resp.Content.Headers.ContentRange is { } cr)
            {
                ctx.Response.Headers.ContentRange = cr.ToString();
            }
            await using var body = await resp.Content.ReadAsStreamAsync(ctx.RequestAborted);
            var full = resp.StatusCode == System.Net.HttpStatusCode.OK;
            // Full bodies are checked against the committed etag, holding the last chunk back until it matches.
            var copy = full
                ? await StreamCopier.CopyVerifiedAsync(body, ctx.Response.Body, meta.Etag, ctx.RequestAborted)
                : await StreamCopier.CopyAsync(body, ctx.Response.Body, ctx.RequestAborted);
            if (!copy.Ok || (full && (copy.Bytes != meta.Size || copy.Etag != meta.Etag)))
            {
                // Never end a response that carried wrong bytes normally: the client must see a failure.
                logger.LogError("proxy GET of {Key} from {Url}: {Bytes} bytes, etag {Etag}, expected {Size}/{Want}", KeyCodec.Display(key), url, copy.Bytes, copy.Etag, meta.Size, meta.Etag);
                if (!ctx.Response.HasStarted && !ctx.RequestAborted.IsCancellationRequested)
                {
                    // Nothing reached the client yet (the held-back chunk was all there was): try the next replica.
                    ctx.Response.Clear();
                    return false;
                }
                ctx.Abort();
            }
            return true;
        }
    }
}
