using Microsoft.Extensions.Logging;
using NanoKv.Core;
using NanoKv.Core.Metrics;
using NanoKv.Metadata;

namespace NanoKv.Coordinator.Core;

/// <summary>
/// The transport-free object store: PUT/GET/DELETE with plain arguments and results. A write is
/// upload (each volume prepares on arrival) → verify → commit on N replicas, aborted on any failure before commit and rolled back
/// after a partial commit, so a key is either fully written or absent. Front ends (native HTTP, S3) only
/// translate requests and results; replication, placement and commit live here alone.
/// </summary>
public sealed partial class ObjectStore(IMetaStore store, NodeRegistry nodes, VolumeClient volumes, VersionClock clock, DataPathSettings settings, string? secret, ILogger logger)
{
    /// <summary>How long a redirect's presigned volume URL stays valid.</summary>
    private static readonly TimeSpan PresignLifetime = TimeSpan.FromMinutes(5);

    public DataPathSettings Settings => settings;

    public IMetaStore Meta => store;

    /// <summary>Committed metadata of key, or null when it does not exist (pending and deleted keys do not).</summary>
    public ObjectMeta? Head(byte[] key) => store.Get(key) is { State: ObjectState.Committed } m ? m : null;

    /// <summary>Streams the body once to every replica and commits it; the result is the committed metadata.</summary>
    public async Task<StoreResult<ObjectMeta>> PutAsync(PutRequest request, CancellationToken ct)
    {
        var key = request.Key;
        if (request.Length > ServerHost.MaxObjectBytes)
        {
            return new StoreError(StoreErrorKind.TooLarge, $"objects are limited to {ServerHost.MaxObjectBytes} bytes");
        }
        var phase = System.Diagnostics.Stopwatch.GetTimestamp();
        var begun = await BeginWriteAsync(key);
        if (!begun.Ok)
        {
            return begun.Error!;
        }
        // The guard aborts the reservation on every exit before commit, including exceptions.
        await using var write = begun.Value!;
        phase = Metrics.Phase(PutPhase.Metadata, phase);

        // Upload: one read of the client body, hashed once, streamed to all replicas in parallel; each
        // volume prepares the upload as the request arrives (no separate prepare round trip).
        var (copy, uploads) = await UploadAsync(write, request.Body, request.Length, ct);
        phase = Metrics.Phase(PutPhase.Upload, phase);
        var failure = UploadFailure(write, copy, uploads, request.Length, ct);
        if (failure is not null)
        {
            return failure;
        }
        if (request.BeforeCommit is { } check && await check(copy) is { } refused)
        {
            return refused;
        }
        // Recorded before commit so a coordinator crash during commit can roll forward. Not fsync'd: if it
        // is lost, recovery rolls the (never acknowledged) write back instead — unless a spare replaced a
        // replica: then the record must name the replica that will hold the blob before it is committed.
        var placed = uploads.Select(u => u.Node).ToList();
        var moved = !placed.SequenceEqual(write.Meta.Replicas);
        if (!write.TrySwap(write.Meta with { Size = copy.Bytes, Etag = copy.Etag, Replicas = placed }, sync: moved))
        {
            return LeaseLapsed(key);
        }

        // Commit: not cancellable by the client from here on; a key must end fully written or absent.
        write.Settle();
        var pending = write.Meta;
        var commits = await Task.WhenAll(pending.Replicas.Select(id =>
            volumes.CommitAsync(nodes.UrlOf(id)!, key, pending.UploadId, pending.Version, CancellationToken.None)));
        pending = write.StopRenewing(); // the latest lease: the swaps below compare it
        phase = Metrics.Phase(PutPhase.Commit, phase);
        Metrics.ReplicaFailed(PutPhase.Commit, commits.Count(c => !c.Ok));
        if (commits.All(c => c.Ok))
        {
            CrashPoints.Hit(CrashPoint.CoordinatorAfterCommitFanOut);
            var meta = pending with { State = ObjectState.Committed, UpdatedMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Owner = "", LeaseUntilMs = 0 };
            if (CrashPoints.Skipped(CrashPoints.WalSync))
            {
                store.Put(key, meta, sync: false); // test-only mutation: the durability checker must notice
            }
            else if (!store.CompareAndSwap(key, pending, meta, sync: !request.SyncedByNextWrite))
            {
                // Another coordinator's recovery resolved this pending write first; its verdict stands.
                var now = store.Get(key);
                if (now is not { State: ObjectState.Committed } || now.UploadId != pending.UploadId)
                {
                    return new StoreError(StoreErrorKind.ReplicaFailed, $"the write of {KeyCodec.Display(key)} was rolled back by a recovering coordinator");
                }
                meta = now;
            }
            Metrics.Phase(PutPhase.Metadata, phase);
            return meta;
        }
        var failed = pending.Replicas.Select((id, i) => (Id: id, Call: commits[i])).Where(x => !x.Call.Ok).Select(x => $"{x.Id}: {x.Call.Describe()}");
        await RollBackAsync(key, pending, pending.Replicas.Where((_, i) => commits[i].Ok).ToList(), pending.Replicas.Where((_, i) => !commits[i].Ok).ToList());
        return new StoreError(StoreErrorKind.ReplicaFailed, $"commit failed on {string.Join("; ", failed)}; the write was rolled back");
    }

    /// <summary>Reserves the key with a pending record under the key lock, or says why it cannot be written.</summary>
    private async Task<StoreResult<PendingWrite>> BeginWriteAsync(byte[] key)
    {
        var n = settings.Replicas;
        using (await store.LockAsync(key))
        {
            var previous = store.Get(key);
            if (previous?.State == ObjectState.Committed)
            {
                return new StoreError(StoreErrorKind.KeyExists, $"key {KeyCodec.Display(key)} already exists; objects are write-once (DELETE it first)");
            }
            if (previous?.State == ObjectState.Pending)
            {
                return new StoreError(StoreErrorKind.WriteInProgress, $"another write of key {KeyCodec.Display(key)} is in progress");
            }
            var alive = nodes.AliveIds();
            if (alive.Count < n)
            {
                return new StoreError(StoreErrorKind.InsufficientNodes, $"{alive.Count} alive volumes, {n} replicas required");
            }
            var ranked = Placement.Rank(key, alive);
            var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            var pending = Leased(new ObjectMeta
            {
                State = ObjectState.Pending,
                Replicas = ranked.GetRange(0, n),
                UploadId = Guid.NewGuid().ToString("N"),
                Version = clock.Next(),
                CreatedMs = now,
                UpdatedMs = now,
            });
            // The lock orders writers in this process; the compare-and-swap orders them across coordinators
            // sharing the metadata: exactly one reservation of a free key wins.
            var write = new PendingWrite(this, key, pending, previous, ranked.Skip(n));
            Track(write); // before the swap: this coordinator's sweeper must never take a write it is running
            if (!store.CompareAndSwap(key, previous, pending))
            {
                Forget(write);
                return new StoreError(StoreErrorKind.WriteInProgress, $"another write of key {KeyCodec.Display(key)} started meanwhile");
            }
            return write;
        }
    }

    /// <summary>Classifies a finished upload: the client's fault, a replica's, or fine (null).</summary>
    private static StoreError? UploadFailure(PendingWrite write, CopyResult copy, SlotUpload[] slots, long? length, CancellationToken ct)
    {
        // A slot that found no node willing to take the body: placement failed, not a replica mid-write.
        if (slots.Any(u => u.Unplaced))
        {
            var full = slots.Where(u => u.Unplaced).All(u => u.Call.Status == 507);
            return full
                ? new StoreError(StoreErrorKind.InsufficientStorage, string.Join("; ", slots.SelectMany(u => u.Failures)))
                : new StoreError(StoreErrorKind.InsufficientNodes, $"could not place {slots.Length} replicas: {string.Join("; ", slots.SelectMany(u => u.Failures))}");
        }
        var uploads = slots.Select(u => u.Call).ToArray();
        if (copy.Status == CopyStatus.InputError || copy.Status == CopyStatus.Canceled || ct.IsCancellationRequested)
        {
            return copy.Error switch
            {
                BodyRejectedException e => new StoreError(StoreErrorKind.InvalidBody, e.Message, e),
                InvalidDataException e => new StoreError(StoreErrorKind.SizeMismatch, e.Message, e),
                _ => new StoreError(StoreErrorKind.UploadIncomplete, $"request body ended after {copy.Bytes} bytes: {copy.Error?.Message}", copy.Error),
            };
        }
        // One replica's failure cancels the others; report the cause (a full disk, then any definite
        // answer) rather than the cancellations it triggered.
        var failedUpload = Enumerable.Range(0, uploads.Length).Where(i => !uploads[i].Ok)
            .OrderByDescending(i => uploads[i].Status == 507).ThenByDescending(i => uploads[i].Status != 0).FirstOrDefault(-1);
        if (failedUpload >= 0)
        {
            var full = uploads[failedUpload].Status is 507;
            return new StoreError(full ? StoreErrorKind.InsufficientStorage : StoreErrorKind.ReplicaFailed,
                $"upload to {slots[failedUpload].Node} failed: {uploads[failedUpload].Describe()}");
        }
        if (!copy.Ok)
        {
            return new StoreError(StoreErrorKind.ReplicaFailed, $"upload failed: {copy.Error?.Message}", copy.Error);
        }
        if (length is long want && copy.Bytes != want)
        {
            return new StoreError(StoreErrorKind.UploadIncomplete, $"received {copy.Bytes} bytes, Content-Length said {want}");
        }
        // Verify: every replica must have fsync'd exactly the bytes we read.
        for (var i = 0; i < uploads.Length; i++)
        {
            var got = uploads[i].As<UploadResult>();
            if (got is null || got.Size != copy.Bytes || !string.Equals(got.Etag, copy.Etag, StringComparison.Ordinal))
            {
                var expected = copy.Etag.Length > 0
                    ? $"expected {copy.Bytes} bytes with etag {copy.Etag}"
                    : $"the replicas disagree ({string.Join(", ", uploads.Select((u, j) => $"{slots[j].Node}: {u.As<UploadResult>()?.Size} bytes, etag {u.As<UploadResult>()?.Etag}"))}; {copy.Bytes} bytes were sent)";
                return new StoreError(StoreErrorKind.ChecksumMismatch, $"replica {slots[i].Node} stored {got?.Size} bytes with etag {got?.Etag}; {expected}");
            }
        }
        return null;
    }

    /// <summary>DELETE: tombstone first (the key is gone from then on), then delete on every replica.</summary>
    public async Task DeleteAsync(byte[] key, CancellationToken ct)
    {
        ObjectMeta tomb;
        using (await store.LockAsync(key))
        {
            while (true)
            {
                var meta = store.Get(key);
                // A pending write is not visible yet: this DELETE linearizes before it.
                if (meta is null || meta.State != ObjectState.Committed)
                {
                    return;
                }
                tomb = meta with { State = ObjectState.Tombstoned, Version = clock.Next(), UpdatedMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() };
                if (store.CompareAndSwap(key, meta, tomb))
                {
                    break; // else another coordinator changed the key: look again
                }
            }
        }
        await FanOutDeleteAsync(key, tomb.Replicas, tomb.Version);
    }

    private async Task<(CopyResult Copy, SlotUpload[] Slots)> UploadAsync(PendingWrite write, Stream body, long? length, CancellationToken clientGone)
    {
        var n = write.Meta.Replicas.Count;
        var broadcast = new Broadcast(n, settings.UploadIdleTimeout);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(clientGone);
        var uploads = Enumerable.Range(0, n).Select(i => Task.Run(async () =>
        {
            var r = await UploadSlotAsync(write, broadcast, i, length, cts.Token);
            if (!r.Call.Ok)
            {
                // the first failure, not the cancellations it causes
                Metrics.ReplicaFailed(r.Unplaced ? PutPhase.Prepare : PutPhase.Upload, cts.IsCancellationRequested ? 0 : 1);
                broadcast.Fail(i, new IOException(r.Call.Describe()));
                await cts.CancelAsync(); // one failed replica fails the PUT: stop the others
            }
            return r;
        })).ToArray();
        // With two or more replicas each volume's own BLAKE3 of what it fsync'd is the check: they must all
        // agree (a copy damaged on the way differs from the others), so the coordinator skips its own pass
        // over the bytes (one of four per PUT). A single replica is checked against the coordinator's hash.
        var hashHere = n < 2;
        var copy = await broadcast.PumpAsync(body, length ?? ServerHost.MaxObjectBytes, cts.Token, hashHere);
        if (!copy.Ok)
        {
            await cts.CancelAsync();
        }
        else
        {
            cts.CancelAfter(settings.UploadIdleTimeout); // each volume still has to fsync and answer
        }
        var results = await Task.WhenAll(uploads);
        if (copy.Status == CopyStatus.Canceled && !clientGone.IsCancellationRequested)
        {
            copy = copy with { Status = CopyStatus.OutputError };
        }
        if (!hashHere && copy.Ok && results.All(r => r.Call.Ok))
        {
            var etags = results.Select(r => r.Call.As<UploadResult>()?.Etag).Distinct(StringComparer.Ordinal).ToList();
            if (etags is [{ Length: > 0 } agreed])
            {
                copy = copy with { Etag = agreed };
            }
        }
        return (copy, results);
    }

    /// <summary>
    /// Sends slot i's body to its replica, which prepares the upload on arrival. A node that refuses before
    /// taking a byte (down, full, failing; transient refusals retried inside the time box) is replaced by the
    /// next spare in HRW order — the body is still whole for the new node.
    /// </summary>
    private async Task<SlotUpload> UploadSlotAsync(PendingWrite write, Broadcast broadcast, int slot, long? length, CancellationToken ct)
    {
        var node = write.Meta.Replicas[slot];
        var failures = new List<string>();
        while (true)
        {
            write.Touch(node);
            CallResult r;
            var sent = false;
            try
            {
                // Reads go to the first replica (Locate keeps placement order): it keeps the new object in its
                // page cache; the others write around theirs, which costs a fraction of the CPU (DirectWriter).
                (r, sent) = nodes.UrlOf(node) is { } url
                    ? await volumes.UploadPreparingAsync(url, write.Meta.UploadId, write.Key, length, onStart => broadcast.ContentFor(slot, length, onStart), ct, keepCached: slot == 0)
                    : (new CallResult(false, 0, "unknown node", false), false);
            }
            catch (OperationCanceledException)
            {
                return new SlotUpload(node, new CallResult(false, 0, "canceled", true), false, failures); // another slot failed, or the client left
            }
            if (r.Ok || sent)
            {
                return new SlotUpload(node, r, false, failures);
            }
            if (r.Status == 0)
            {
                nodes.ReportFailure(node);
            }
            failures.Add($"{node}: {r.Describe()}");
            if (!write.TryTakeSpare(out var next))
            {
                return new SlotUpload(node, r, true, failures);
            }
            node = next;
        }
    }

    /// <summary>Undoes a reservation that never reached commit: abort the prepared uploads, restore the key.</summary>
    private async Task AbortAsync(byte[] key, ObjectMeta pending, IReadOnlyCollection<string> touched, ObjectMeta? previous)
    {
        await Task.WhenAll(touched.Select(id => volumes.AbortAsync(nodes.UrlOf(id)!, pending.UploadId, CancellationToken.None, key, pending.Version)));
        // Only if the key still holds this reservation (a recovering coordinator may have resolved it).
        store.CompareAndSwap(key, pending, previous);
    }

    /// <summary>A reserved write; disposing it before <see cref="Settle"/> aborts it (the one abort guard of PUT).</summary>
    private sealed partial class PendingWrite(ObjectStore owner, byte[] key, ObjectMeta meta, ObjectMeta? previous, IEnumerable<string> spares) : IAsyncDisposable
    {
        private bool _settled;

        public byte[] Key => key;

        public ObjectMeta Meta { get; private set; } = meta;

        private readonly HashSet<string> _touched = [];

        private readonly Queue<string> _spares = new(spares);

        /// <summary>Records a node an upload was sent to: abort must reach it.</summary>
        public void Touch(string node)
        {
            lock (_touched)
            {
                _touched.Add(node);
            }
        }

        /// <summary>The next node in HRW order after the chosen ones (slots take them concurrently).</summary>
        public bool TryTakeSpare(out string node)
        {
            lock (_spares)
            {
                return _spares.TryDequeue(out node!);
            }
        }

        /// <summary>From here on commit or rollback decides the outcome; no abort.</summary>
        public void Settle() => _settled = true;

        public async ValueTask DisposeAsync()
        {
            var latest = StopRenewing();
            try
            {
                if (!_settled)
                {
                    owner.Metrics.Aborts.Inc();
                    string[] touched;
                    lock (_touched)
                    {
                        touched = [.. _touched];
                    }
                    await owner.AbortAsync(key, latest, touched, previous);
                }
            }
            finally
            {
                owner.Forget(this);
            }
        }
    }
}
