using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Coordinator.Core;

/// <summary>An S3 PutObject: the body becomes a fresh blob, then the bucket/key record switches to it.</summary>
public sealed record ObjectPut(string Bucket, byte[] Key, Stream Body, long? Length)
{
    public ObjectAttributes Attributes { get; init; } = new();

    public WriteCondition Condition { get; init; } = WriteCondition.Overwrite;

    /// <summary>The ETag an <see cref="WriteCondition.IfMatch"/> write expects (without quotes).</summary>
    public string? IfMatchEtag { get; init; }

    /// <summary>The S3 ETag of the body, asked for once the body has been read (the front end hashes MD5 as it streams).</summary>
    public required Func<string> Etag { get; init; }

    /// <summary>Checks before commit (Content-MD5, checksums); an error aborts the write.</summary>
    public Func<CopyResult, ValueTask<StoreError?>>? BeforeCommit { get; init; }

    /// <summary>The client's verified x-amz-checksum-* (header name, value), asked for once the body has been read (it may come in a trailer).</summary>
    public Func<(string Name, string Value)?>? Checksum { get; init; }
}

/// <summary>
/// An S3 object opened for reading: its record, with its blobs leased so an overwrite or delete that
/// happens meanwhile does not remove them under the reader. Dispose when the response is done.
/// </summary>
public sealed class ObjectHandle(ObjectStore owner, S3ObjectRecord record) : IDisposable
{
    private int _disposed;

    public S3ObjectRecord Record => record;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            owner.ReleaseLeases(record.Blobs);
        }
    }
}

/// <summary>S3 objects: overwrite with an atomic switch, conditional writes, leased reads, deletes.</summary>
public sealed partial class ObjectStore
{
    /// <summary>Readers per blob key (hex), and blobs retired while read (deleted when the last reader leaves).</summary>
    private readonly Dictionary<string, int> _leases = [];
    private readonly HashSet<string> _retired = [];

    /// <summary>Background deletes of replaced blobs, awaited at shutdown so none touches closed metadata.</summary>
    private readonly HashSet<Task> _background = [];
    private bool _draining;

    public S3ObjectRecord? HeadObject(string bucket, byte[] key) =>
        store.GetRecord<S3ObjectRecord>(RecordTable.S3Objects, BlobKeys.ObjectRecordKey(bucket, key));

    /// <summary>Opens bucket/key for reading (null when absent); the record and its leases are taken together.</summary>
    public async Task<ObjectHandle?> OpenObjectAsync(string bucket, byte[] key)
    {
        var recordKey = BlobKeys.ObjectRecordKey(bucket, key);
        using (await store.LockAsync(recordKey))
        {
            var record = store.GetRecord<S3ObjectRecord>(RecordTable.S3Objects, recordKey);
            if (record is null)
            {
                return null;
            }
            TakeLeases(record.Blobs);
            return new ObjectHandle(this, record);
        }
    }

    /// <summary>Writes the body as a new blob with the full 2PC, then switches bucket/key to it if the condition still holds.</summary>
    public async Task<StoreResult<S3ObjectRecord>> PutObjectAsync(ObjectPut put, CancellationToken ct)
    {
        if (GetBucket(put.Bucket) is null)
        {
            return new StoreError(StoreErrorKind.NoSuchBucket, $"bucket {put.Bucket} does not exist");
        }
        var recordKey = BlobKeys.ObjectRecordKey(put.Bucket, put.Key);
        // Checked first so a doomed conditional write does not upload, and again at the switch (race-free).
        if (CheckCondition(put, store.GetRecord<S3ObjectRecord>(RecordTable.S3Objects, recordKey)) is { } early)
        {
            return early;
        }
        var blobKey = BlobKeys.ForObject(put.Bucket, put.Key, clock.Next());
        var blob = await PutAsync(new PutRequest(blobKey, put.Body, put.Length) { BeforeCommit = put.BeforeCommit, SyncedByNextWrite = true }, ct);
        if (!blob.Ok)
        {
            return blob.Error!;
        }
        var meta = blob.Value!;
        var record = new S3ObjectRecord
        {
            Blobs = [new BlobRef(blobKey, meta.Size, meta.Etag)],
            Size = meta.Size,
            Etag = put.Etag(),
            Attributes = put.Checksum?.Invoke() is { } checksum ? put.Attributes with { ChecksumName = checksum.Name, ChecksumValue = checksum.Value } : put.Attributes,
            LastModifiedMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
        };
        var (switched, previous) = await SwitchAsync(recordKey, record, current => CheckCondition(put, current));
        if (!switched.Ok)
        {
            await DeleteAsync(blobKey, CancellationToken.None); // lost the race: the new blob is garbage
            return switched.Error!;
        }
        if (previous is not null)
        {
            // A live rebuild may have restored this very blob as the record being replaced: never retire it.
            Retire(previous.OwnedBlobs().Where(b => !b.BlobKey.AsSpan().SequenceEqual(blobKey)));
        }
        return switched.Value!;
    }

    /// <summary>Removes bucket/key (a no-op when absent, as S3 answers 204 either way); its blobs go once unread.</summary>
    public async Task<S3ObjectRecord?> DeleteObjectAsync(string bucket, byte[] key)
    {
        var recordKey = BlobKeys.ObjectRecordKey(bucket, key);
        S3ObjectRecord? previous;
        using (await store.LockAsync(recordKey))
        {
            do
            {
                previous = store.GetRecord<S3ObjectRecord>(RecordTable.S3Objects, recordKey);
                if (previous is null)
                {
                    return null;
                }
            }
            while (!store.CompareAndSwapRecord<S3ObjectRecord>(RecordTable.S3Objects, recordKey, previous, null));
        }
        Retire(previous.OwnedBlobs());
        return previous;
    }

    /// <summary>
    /// Streams bytes start..end (inclusive) of an opened object into sink, blob after blob. The front end has
    /// set status and headers; each whole blob is verified against its BLAKE3, a replica failing before the
    /// first byte is replaced by another, and a failure after bytes went out aborts the response.
    /// </summary>
    public async Task<StoreError?> ReadObjectAsync(ObjectHandle handle, long start, long end, IObjectSink sink, CancellationToken ct)
    {
        long offset = 0;
        foreach (var blob in handle.Record.Blobs)
        {
            var blobStart = offset;
            var blobEnd = offset + blob.Size - 1;
            offset += blob.Size;
            if (blob.Size == 0 || blobEnd < start || blobStart > end)
            {
                continue;
            }
            var located = Locate(blob.BlobKey);
            if (!located.Ok)
            {
                logger.LogError("S3 object blob {Blob} has no metadata: {Error}", KeyCodec.Display(blob.BlobKey), located.Error!.Detail);
                return Fail(sink, new StoreError(StoreErrorKind.Unavailable, $"a blob of the object is missing: {located.Error!.Detail}"));
            }
            var from = Math.Max(start, blobStart) - blobStart;
            var to = Math.Min(end, blobEnd) - blobStart;
            ByteRange? range = from == 0 && to == blob.Size - 1 ? null : ByteRange.Of(from, to);
            var whole = range is null && blob.Size == handle.Record.Size;
            var failed = await ReadAsync(located.Value!, range, new SegmentSink(sink, whole), ct);
            if (failed is not null)
            {
                return Fail(sink, failed);
            }
        }
        return null;
    }

    /// <summary>Bytes start..end of an opened object as a stream (for CopyObject and UploadPartCopy).</summary>
    public Stream OpenObjectStream(ObjectHandle handle, long start, long end, CancellationToken ct)
    {
        var pipe = new Pipe();
        _ = Task.Run(async () =>
        {
            var sink = new PipeSink(pipe.Writer);
            Exception? error = null;
            try
            {
                var failed = await ReadObjectAsync(handle, start, end, sink, ct);
                if (failed is not null || sink.Aborted)
                {
                    error = new IOException(failed?.Detail ?? "the source object could not be read intact");
                }
            }
            catch (Exception ex)
            {
                error = ex;
            }
            await pipe.Writer.CompleteAsync(error);
        }, CancellationToken.None);
        return pipe.Reader.AsStream();
    }

    private static StoreError Fail(IObjectSink sink, StoreError error)
    {
        if (sink.HasStarted)
        {
            sink.Abort();
        }
        return error;
    }

    private static StoreError? CheckCondition(ObjectPut put, S3ObjectRecord? current) => put.Condition switch
    {
        WriteCondition.IfNoneMatch when current is not null => new StoreError(StoreErrorKind.PreconditionFailed, "the object exists (If-None-Match: *)"),
        WriteCondition.IfMatch when current is null => new StoreError(StoreErrorKind.NotFound, "the object does not exist (If-Match)"),
        WriteCondition.IfMatch when put.IfMatchEtag != "*" && current!.Etag != put.IfMatchEtag => new StoreError(StoreErrorKind.PreconditionFailed, $"the object's ETag is {current.Etag}, not {put.IfMatchEtag}"),
        _ => null,
    };

    /// <summary>
    /// Under the record's lock (and alsoLock's, taken together: nested locks can share a stripe): re-checks, writes
    /// the new record (fsync'd), returns the replaced one.
    /// </summary>
    private async Task<(StoreResult<S3ObjectRecord> Result, S3ObjectRecord? Previous)> SwitchAsync(byte[] recordKey, S3ObjectRecord record, Func<S3ObjectRecord?, StoreError?> check,
        Action<RecordBatch>? alsoWrite = null, byte[]? alsoLock = null)
    {
        using (await (alsoLock is null ? store.LockAsync(recordKey) : store.LockAllAsync([recordKey, alsoLock])))
        {
            while (true)
            {
                var current = store.GetRecord<S3ObjectRecord>(RecordTable.S3Objects, recordKey);
                if (check(current) is { } refused)
                {
                    return (refused, null);
                }
                record = record with { Version = clock.Next() };
                if (alsoWrite is not null)
                {
                    // Multipart completion also drops the upload's records in the same atomic write (ordered by
                    // the in-process lock; see docs/metadata-backends.md for several coordinators).
                    store.WriteRecords(b =>
                    {
                        b.Put(RecordTable.S3Objects, recordKey, record);
                        alsoWrite(b);
                    });
                    return (record, current);
                }
                // Across coordinators the swap decides: a writer that lost re-reads and re-checks its condition.
                if (store.CompareAndSwapRecord(RecordTable.S3Objects, recordKey, current, record))
                {
                    return (record, current);
                }
            }
        }
    }

    private void TakeLeases(IEnumerable<BlobRef> blobs)
    {
        lock (_leases)
        {
            foreach (var b in blobs)
            {
                var id = Convert.ToHexString(b.BlobKey);
                _leases[id] = _leases.GetValueOrDefault(id) + 1;
            }
        }
    }

    internal void ReleaseLeases(IEnumerable<BlobRef> blobs)
    {
        var free = new List<byte[]>();
        lock (_leases)
        {
            foreach (var b in blobs)
            {
                var id = Convert.ToHexString(b.BlobKey);
                var n = _leases.GetValueOrDefault(id) - 1;
                if (n > 0)
                {
                    _leases[id] = n;
                    continue;
                }
                _leases.Remove(id);
                if (_retired.Remove(id))
                {
                    free.Add(b.BlobKey);
                }
            }
        }
        DeleteBlobsInBackground(free);
    }

    /// <summary>Deletes blobs no record points to any more: now, or when their last reader finishes.</summary>
    private void Retire(IEnumerable<BlobRef> blobs)
    {
        var free = new List<byte[]>();
        lock (_leases)
        {
            foreach (var b in blobs)
            {
                var id = Convert.ToHexString(b.BlobKey);
                if (_leases.ContainsKey(id))
                {
                    _retired.Add(id);
                }
                else
                {
                    free.Add(b.BlobKey);
                }
            }
        }
        DeleteBlobsInBackground(free);
    }

    /// <summary>A crash before these finish leaves unreferenced blobs, which gc collects.</summary>
    private void DeleteBlobsInBackground(List<byte[]> blobKeys)
    {
        if (blobKeys.Count == 0)
        {
            return;
        }
        lock (_background)
        {
            if (_draining)
            {
                return; // shutting down: the metadata is about to close; gc collects these blobs
            }
            var task = Task.Run(async () =>
            {
                foreach (var k in blobKeys)
                {
                    try
                    {
                        await DeleteAsync(k, CancellationToken.None);
                    }
                    catch (Exception ex)
                    {
                        logger.LogWarning(ex, "deleting replaced blob {Blob} failed; gc will collect it", KeyCodec.Display(k));
                    }
                }
            }, CancellationToken.None);
            _background.Add(task);
            _ = task.ContinueWith(t => Forget(t), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    private void Forget(Task task)
    {
        lock (_background)
        {
            _background.Remove(task);
        }
    }

    /// <summary>Waits for background deletes (a bounded time) and starts no new ones; call before closing the metadata.</summary>
    public async Task DrainAsync(TimeSpan timeout)
    {
        Task[] pending;
        lock (_background)
        {
            _draining = true;
            pending = [.. _background];
        }
        try
        {
            await Task.WhenAll(pending).WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            logger.LogWarning("{Count} background deletes still running at shutdown; gc collects what they miss", pending.Length);
        }
    }

    /// <summary>One blob of a multi-blob read: the front end already chose status and headers.</summary>
    private sealed class SegmentSink(IObjectSink outer, bool whole) : IObjectSink
    {
        public bool HasStarted => outer.HasStarted;

        public Stream Body => outer.Body;

        public PipeWriter? Writer => outer.Writer;

        /// <summary>Only a blob that is the whole response may be written raw.</summary>
        public IRawResponse? Raw => whole ? outer.Raw : null;

        public void Begin(int status, long? length, string? contentRange)
        {
        }

        public void Reset()
        {
        }

        public void Abort() => outer.Abort();
    }

    /// <summary>A read into a pipe; started means bytes were written.</summary>
    private sealed class PipeSink(PipeWriter writer) : IObjectSink
    {
        private readonly Stream _body = writer.AsStream(leaveOpen: true);

        public bool Aborted { get; private set; }

        /// <summary>Once the body was handed to a copy, bytes may be in the pipe: no failover after that.</summary>
        public bool HasStarted { get; private set; }

        public Stream Body
        {
            get
            {
                HasStarted = true;
                return _body;
            }
        }

        public PipeWriter? Writer => null; // the copy's reader is another task: Body marks the start

        public IRawResponse? Raw => null;

        public void Begin(int status, long? length, string? contentRange)
        {
        }

        public void Reset()
        {
        }

        public void Abort() => Aborted = true;
    }
}
