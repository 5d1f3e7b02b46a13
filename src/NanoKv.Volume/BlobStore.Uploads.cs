using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Text.Json;
using NanoKv.Core;

namespace NanoKv.Volume;

/// <summary>The upload protocol: prepare, receive, commit, abort and status, and where upload state lives.</summary>
public sealed partial class BlobStore
{
    /// <summary>Prepare: reserve an upload slot. Idempotent for the same (upload_id, key).</summary>
    public UploadStatus Prepare(byte[] key, string uploadId, long? expectedSize)
    {
        CheckUploadId(uploadId);
        if (expectedSize is < 0 or > ServerHost.MaxObjectBytes)
        {
            throw new VolumeException(400, ApiError.Codes.InvalidArgument, $"expected_size must be between 0 and {ServerHost.MaxObjectBytes}");
        }
        var existing = ReadMeta(uploadId);
        if (existing is not null)
        {
            if (!existing.Key.SequenceEqual(key))
            {
                throw new VolumeException(409, ApiError.Codes.UploadConflict, $"upload {uploadId} was prepared for another key");
            }
            return existing.ToStatus(uploadId);
        }
        if (IsCommitted(uploadId))
        {
            return new UploadStatus(uploadId, "committed", null, null);
        }
        if (expectedSize is long want && want > FreeBytes())
        {
            throw new VolumeException(507, ApiError.Codes.InsufficientStorage, $"{want} bytes requested, {FreeBytes()} free");
        }
        File.OpenHandle(DataPath(uploadId), FileMode.OpenOrCreate, FileAccess.Write).Dispose();
        var meta = new UploadMeta { Key = key, ExpectedSize = expectedSize, State = "prepared" };
        WriteMeta(uploadId, meta);
        return meta.ToStatus(uploadId);
    }

    /// <summary>Receives an upload's bytes from a stream (a pull from another volume); see the PipeReader overload.</summary>
    public async Task<UploadResult> ReceiveAsync(string uploadId, Stream body, string? expectedEtag, CancellationToken ct)
    {
        var reader = PipeReader.Create(body, new StreamPipeReaderOptions(bufferSize: FileReceiver.BatchSize, leaveOpen: true));
        try
        {
            return await ReceiveAsync(uploadId, reader, expectedEtag, ct);
        }
        finally
        {
            await reader.CompleteAsync();
        }
    }

    /// <summary>Receives an upload's bytes into its temp file, hashing them (fsync'd at commit). Re-sending restarts it.</summary>
    /// <param name="bypassCache">write around the page cache (a replica that GETs do not go to first)</param>
    public async Task<UploadResult> ReceiveAsync(string uploadId, PipeReader body, string? expectedEtag, CancellationToken ct, bool bypassCache = false)
    {
        CheckUploadId(uploadId);
        using var active = new ActiveUpload(ct);
        UploadMeta meta;
        // Registration and Abort's delete share a lock, so an abort either sees this receive (and waits
        // for it) or has already removed the upload (and this receive answers unknown_upload).
        lock (_uploadsLock)
        {
            meta = ReadMeta(uploadId) ?? throw UnknownUpload(uploadId);
            if (!_busyUploads.TryAdd(uploadId, active))
            {
                throw new VolumeException(409, ApiError.Codes.UploadConflict, $"upload {uploadId} is already receiving data");
            }
        }
        ct = active.Cts.Token;
        try
        {
            var path = DataPath(uploadId);
            CopyResult result;
            // Synchronous handle: page-cache writes are cheaper inline than as a thread-pool hop each.
            // Open (not Create): prepare made the file, and truncating an empty file still costs a setattr.
            using (var handle = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.Read))
            {
                if (RandomAccess.GetLength(handle) > 0)
                {
                    RandomAccess.SetLength(handle, 0); // a re-sent upload starts over
                }
                result = await FileReceiver.CopyAsync(body, handle, meta.ExpectedSize ?? ServerHost.MaxObjectBytes, ct, bypassCache);
            }
            if (!result.Ok)
            {
                Truncate(path);
                throw result.Status switch
                {
                    CopyStatus.OutputError when IsDiskFull(result.Error) => new VolumeException(507, ApiError.Codes.InsufficientStorage, "disk full while receiving upload"),
                    CopyStatus.OutputError => new VolumeException(500, ApiError.Codes.Internal, $"write failed: {result.Error?.Message}"),
                    CopyStatus.Canceled => new OperationCanceledException(),
                    _ when result.Error is InvalidDataException => new VolumeException(400, ApiError.Codes.SizeMismatch, result.Error.Message),
                    _ => new VolumeException(400, ApiError.Codes.UploadIncomplete, $"body ended early after {result.Bytes} bytes: {result.Error?.Message}"),
                };
            }
            if (meta.ExpectedSize is long want && want != result.Bytes)
            {
                Truncate(path);
                throw new VolumeException(400, ApiError.Codes.SizeMismatch, $"received {result.Bytes} bytes, expected {want}");
            }
            if (!string.IsNullOrEmpty(expectedEtag) && !string.Equals(expectedEtag, result.Etag, StringComparison.OrdinalIgnoreCase))
            {
                Truncate(path);
                throw new VolumeException(422, ApiError.Codes.ChecksumMismatch, $"received data hashes to {result.Etag}, expected {expectedEtag}");
            }
            UploadWritten?.Invoke(result.Write);
            meta.State = "uploaded";
            meta.Size = result.Bytes;
            meta.Etag = result.Etag;
            WriteMeta(uploadId, meta);
            return new UploadResult(result.Bytes, result.Etag);
        }
        finally
        {
            _busyUploads.TryRemove(uploadId, out _);
            active.Done.TrySetResult();
        }
    }

    /// <summary>Key of a prepared upload (pull needs it to fetch from the source).</summary>
    public byte[] UploadKey(string uploadId)
    {
        CheckUploadId(uploadId);
        return (ReadMeta(uploadId) ?? throw UnknownUpload(uploadId)).Key;
    }

    /// <summary>Commit: rename the fsync'd temp file into place and fsync the directory. Idempotent; the bytes committed (0 when it was done before).</summary>
    public long Commit(string uploadId, byte[] key, long version)
    {
        CheckUploadId(uploadId);
        var meta = ReadMeta(uploadId);
        if (meta is null)
        {
            if (IsCommitted(uploadId) || HoldsVersion(key, version))
            {
                return 0; // retried commit: already done
            }
            throw UnknownUpload(uploadId);
        }
        if (!meta.Key.SequenceEqual(key))
        {
            throw new VolumeException(409, ApiError.Codes.UploadConflict, $"upload {uploadId} belongs to another key");
        }
        if (meta.State != "uploaded")
        {
            throw new VolumeException(409, ApiError.Codes.UploadIncomplete, $"upload {uploadId} has not received its data");
        }
        var data = DataPath(uploadId);
        var dest = BlobPath(key);
        if (!StateInXattr && RenamedIntoPlace(uploadId, meta))
        {
            // A crash (or kill) came between the rename and the marker: the commit happened; finish it.
            File.Move(MetaPath(uploadId), CommittedPath(uploadId), overwrite: true);
            return 0;
        }
        var dir = Path.GetDirectoryName(dest)!;
        MakeFolder(dir, BlobsDir);
        if (KeyCodec.IsHashedName(Path.GetFileName(dest)))
        {
            // The real key of a hashed name lives in a sidecar, written before the blob so rebuild always finds it.
            Durable.WriteAllBytes(dest + ".key", key);
        }
        File.SetLastWriteTimeUtc(data, VersionToTime(version));
        if (meta.Etag is not null)
        {
            Xattr.TrySet(data, EtagXattr, meta.Etag);
        }
        if (StateInXattr)
        {
            // The blob keeps only its etag; a retried commit or abort recognises it by its version (mtime).
            Xattr.TryRemove(data, UploadXattr);
        }
        // The durability point: one fsync for the data, its mtime (version) and xattr (etag), then the
        // rename and the folder fsync. Nothing before this needs to survive a crash: an upload that is not
        // committed is aborted or swept, so prepare and upload skip fsync (measured: 8 fsyncs per replica → 2).
        using (var h = File.OpenHandle(data, FileMode.Open, FileAccess.ReadWrite))
        {
            CrashPoints.Sync(CrashPoints.DataFsync, () => Durable.FsyncFile(h));
        }
        File.Move(data, dest, overwrite: true);
        BlobRemoved?.Invoke(dest);
        CrashPoints.Sync(CrashPoints.DirFsync, () => Durable.FsyncDirectory(dir));
        CrashPoints.Hit(CrashPoint.VolumeAfterRename);
        var tomb = TombPath(key);
        if (File.Exists(tomb) && ReadTombVersion(tomb) < version)
        {
            File.Delete(tomb);
        }
        // The marker lets a retried commit see "committed" by upload id alone. It is not durable: after a crash
        // the blob itself, stamped with this version, is the evidence (recovery and abort check it by key).
        if (StateInXattr)
        {
            _recent.Add(uploadId, meta.Size, meta.Etag);
        }
        else
        {
            File.Move(MetaPath(uploadId), CommittedPath(uploadId), overwrite: true);
        }
        return meta.Size ?? 0;
    }

    /// <summary>
    /// Makes a folder under root (blobs/ or tombs/) and its parents durable: mkdir, then an fsync of the parent.
    /// A caller that finds a folder another caller is still making waits until that maker's fsync returned:
    /// seeing the folder exist is not enough, its entry may not be on disk yet, and a blob (or tombstone)
    /// acknowledged in it could be lost with it. Lock order is child before parent, and a maker never waits
    /// on a child: no cycle.
    /// </summary>
    private void MakeFolder(string dir, string root)
    {
        // The common case, a folder that exists and is not being made, costs a stat and a lookup. Its maker adds
        // the entry before mkdir and removes it after the fsync, so "exists" then "no entry" means it is durable.
        if (Directory.Exists(dir))
        {
            if (_makingFolders.TryGetValue(dir, out var making))
            {
                lock (making)
                {
                }
            }
            return;
        }
        var mine = new Lock();
        lock (mine)
        {
            var maker = _makingFolders.GetOrAdd(dir, mine);
            if (maker != mine)
            {
                lock (maker)
                {
                    return; // made (or failed: then the rename into it fails and the commit with it)
                }
            }
            try
            {
                if (Directory.Exists(dir))
                {
                    return;
                }
                var parent = Path.GetDirectoryName(dir)!;
                if (parent.Length > root.Length)
                {
                    MakeFolder(parent, root);
                }
                Directory.CreateDirectory(dir);
                FolderSyncHook?.Invoke(parent);
                Durable.FsyncDirectory(parent);
            }
            finally
            {
                _makingFolders.TryRemove(KeyValuePair.Create(dir, mine));
            }
        }
    }

    /// <summary>Test seam: runs right before a new folder's parent is fsync'd (the argument is the parent).</summary>
    public Action<string>? FolderSyncHook { get; set; }

    /// <summary>True when this upload's commit is remembered (in memory, or a marker file of the JSON layout).</summary>
    private bool IsCommitted(string uploadId) => _recent.Contains(uploadId) || File.Exists(CommittedPath(uploadId));

    /// <summary>True when the committed blob of key carries exactly this write's version: that write committed here.</summary>
    private bool HoldsVersion(byte[] key, long? version)
    {
        if (version is not long v)
        {
            return false;
        }
        var blob = BlobPath(key);
        return File.Exists(blob) && BlobVersion(blob) == v;
    }

    /// <summary>Abort: stop a receive in progress, drop the temp files. Idempotent; refuses a committed upload.</summary>
    /// <param name="key">with version, lets a commit forgotten by a restart still be refused (its blob has that version)</param>
    public async Task AbortAsync(string uploadId, byte[]? key = null, long? version = null)
    {
        CheckUploadId(uploadId);
        while (true)
        {
            ActiveUpload? active;
            lock (_uploadsLock)
            {
                if (!_busyUploads.TryGetValue(uploadId, out active))
                {
                    var meta = ReadMeta(uploadId);
                    var committed = meta is null
                        ? IsCommitted(uploadId) || (key is not null && HoldsVersion(key, version))
                        : !StateInXattr && RenamedIntoPlace(uploadId, meta);
                    if (committed)
                    {
                        throw new VolumeException(409, ApiError.Codes.UploadConflict, $"upload {uploadId} is already committed; delete the key instead");
                    }
                    File.Delete(DataPath(uploadId));
                    File.Delete(MetaPath(uploadId));
                    return;
                }
            }
            // A receive is running: stop it and wait for it to unwind, or it could recreate the files.
            await active.Cts.CancelAsync();
            await active.Done.Task.WaitAsync(TimeSpan.FromSeconds(30));
        }
    }

    /// <summary>State of an upload: prepared, uploaded, committed or unknown.</summary>
    public UploadStatus Status(string uploadId)
    {
        CheckUploadId(uploadId);
        var meta = ReadMeta(uploadId);
        if (meta is not null)
        {
            return !StateInXattr && RenamedIntoPlace(uploadId, meta) ? new UploadStatus(uploadId, "committed", meta.Size, meta.Etag) : meta.ToStatus(uploadId);
        }
        if (_recent.TryGet(uploadId, out var size, out var etag))
        {
            return new UploadStatus(uploadId, "committed", size, etag);
        }
        // After a restart a commit is proven by its blob (the coordinator's recovery checks it by key).
        return new UploadStatus(uploadId, File.Exists(CommittedPath(uploadId)) ? "committed" : "unknown", null, null);
    }

    /// <summary>
    /// True when an uploaded file has already been renamed into blobs/ but the commit marker was not written
    /// (killed in between): the temp file is gone and the blob carries this upload's size and etag.
    /// </summary>
    private bool RenamedIntoPlace(string uploadId, UploadMeta meta)
    {
        if (meta.State != "uploaded" || File.Exists(DataPath(uploadId)))
        {
            return false;
        }
        var blob = BlobPath(meta.Key);
        return File.Exists(blob) && new FileInfo(blob).Length == meta.Size && (meta.Etag is null || StoredEtag(blob) == meta.Etag);
    }

    private UploadMeta? ReadMeta(string uploadId)
    {
        try
        {
            var bytes = StateInXattr ? Xattr.TryGetBytes(DataPath(uploadId), UploadXattr) : File.ReadAllBytes(MetaPath(uploadId));
            return bytes is null ? null : JsonSerializer.Deserialize<UploadMeta>(bytes, Json);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (JsonException)
        {
            return null; // torn write of a never-acknowledged prepare
        }
    }

    /// <summary>States of the uploads in a volume's tmp/ folder, in either layout (tests and diagnostics).</summary>
    public static IEnumerable<(string UploadId, string State)> UploadStates(string tmpDir)
    {
        foreach (var f in Directory.EnumerateFiles(tmpDir))
        {
            var bytes = f.EndsWith(".json", StringComparison.Ordinal) ? TryRead(f)
                : f.EndsWith(".data", StringComparison.Ordinal) ? Xattr.TryGetBytes(f, UploadXattr) : null;
            if (bytes is not null && TryParse(bytes) is { } meta)
            {
                yield return (Path.GetFileNameWithoutExtension(f), meta.State);
            }
        }

        static byte[]? TryRead(string f)
        {
            try
            {
                return File.ReadAllBytes(f);
            }
            catch (IOException)
            {
                return null;
            }
        }

        static UploadMeta? TryParse(byte[] b)
        {
            try
            {
                return JsonSerializer.Deserialize<UploadMeta>(b, Json);
            }
            catch (JsonException)
            {
                return null;
            }
        }
    }

    /// <summary>
    /// Upload state, written in place and not fsync'd (see Commit): an xattr on the data file, or the JSON file
    /// beside it. A torn write (a process killed mid-write) reads as no state, which callers already treat as
    /// an unknown upload — never acknowledged.
    /// </summary>
    private void WriteMeta(string uploadId, UploadMeta meta)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(meta, Json);
        if (StateInXattr)
        {
            Xattr.Set(DataPath(uploadId), UploadXattr, bytes);
        }
        else
        {
            File.WriteAllBytes(MetaPath(uploadId), bytes);
        }
    }

    private readonly ConcurrentDictionary<string, Lock> _makingFolders = new(StringComparer.Ordinal);

    /// <summary>Upload ids committed since start, newest kept (a retried commit or status by id alone).</summary>
    private sealed class RecentCommits(int capacity)
    {
        private readonly ConcurrentDictionary<string, (long? Size, string? Etag)> _map = new();
        private readonly ConcurrentQueue<string> _order = new();

        public void Add(string uploadId, long? size, string? etag)
        {
            if (_map.TryAdd(uploadId, (size, etag)))
            {
                _order.Enqueue(uploadId);
            }
            while (_order.Count > capacity && _order.TryDequeue(out var old))
            {
                _map.TryRemove(old, out _);
            }
        }

        public bool Contains(string uploadId) => _map.ContainsKey(uploadId);

        public bool TryGet(string uploadId, out long? size, out string? etag)
        {
            var found = _map.TryGetValue(uploadId, out var v);
            (size, etag) = v;
            return found;
        }
    }

    private sealed class ActiveUpload(CancellationToken ct) : IDisposable
    {
        public CancellationTokenSource Cts { get; } = CancellationTokenSource.CreateLinkedTokenSource(ct);

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Dispose() => Cts.Dispose();
    }

    private sealed class UploadMeta
    {
        public byte[] Key { get; set; } = [];

        public long? ExpectedSize { get; set; }

        public string State { get; set; } = "prepared";

        public long? Size { get; set; }

        public string? Etag { get; set; }

        public UploadStatus ToStatus(string id) => new(id, State, Size, Etag);
    }
}
