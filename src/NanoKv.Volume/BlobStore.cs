using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Win32.SafeHandles;
using NanoKv.Core;

namespace NanoKv.Volume;

/// <summary>A failure the volume reports to its caller as status + JSON error.</summary>
public sealed class VolumeException(int status, string code, string detail) : Exception(detail)
{
    public int Status { get; } = status;
    public string Code { get; } = code;
}

/// <summary>
/// The volume's filesystem: committed blobs under blobs/aa/bb/name, uploads in progress under tmp/,
/// delete markers under tombs/aa/bb/name. A blob's mtime is its write version; its BLAKE3 is kept in an xattr.
/// </summary>
public sealed class BlobStore
{
    private const string EtagXattr = "user.nanokv.etag";
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly ConcurrentDictionary<string, ActiveUpload> _busyUploads = new();
    private readonly Lock _uploadsLock = new();

    public BlobStore(string root)
    {
        Root = Path.GetFullPath(root);
        BlobsDir = Path.Combine(Root, "blobs");
        TmpDir = Path.Combine(Root, "tmp");
        TombsDir = Path.Combine(Root, "tombs");
        Durable.CreateDirectory(BlobsDir);
        Durable.CreateDirectory(TmpDir);
        Durable.CreateDirectory(TombsDir);
    }

    public string Root { get; }

    /// <summary>Called with a blob's path after it left blobs/ or was replaced (the read path drops its pin).</summary>
    public Action<string>? BlobRemoved { get; set; }

    public string BlobsDir { get; }

    public string TmpDir { get; }

    public string TombsDir { get; }

    /// <summary>Path of the committed blob for a key (which may not exist).</summary>
    public string BlobPath(byte[] key) => Path.Combine(BlobsDir, KeyCodec.BlobRelativePath(key));

    private string TombPath(byte[] key) => Path.Combine(TombsDir, KeyCodec.BlobRelativePath(key));

    private string DataPath(string uploadId) => Path.Combine(TmpDir, uploadId + ".data");

    private string MetaPath(string uploadId) => Path.Combine(TmpDir, uploadId + ".json");

    private string CommittedPath(string uploadId) => Path.Combine(TmpDir, uploadId + ".committed");

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
        if (File.Exists(CommittedPath(uploadId)))
        {
            return new UploadStatus(uploadId, "committed", null, null);
        }
        if (expectedSize is long want && want > FreeBytes())
        {
            throw new VolumeException(507, ApiError.Codes.InsufficientStorage, $"{want} bytes requested, {FreeBytes()} free");
        }
        File.Create(DataPath(uploadId)).Dispose();
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
    public async Task<UploadResult> ReceiveAsync(string uploadId, PipeReader body, string? expectedEtag, CancellationToken ct)
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
            using (var handle = File.OpenHandle(path, FileMode.Create, FileAccess.Write, FileShare.Read))
            {
                result = await FileReceiver.CopyAsync(body, handle, meta.ExpectedSize ?? ServerHost.MaxObjectBytes, ct);
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

    /// <summary>Commit: rename the fsync'd temp file into place and fsync the directory. Idempotent.</summary>
    public void Commit(string uploadId, byte[] key, long version)
    {
        CheckUploadId(uploadId);
        var meta = ReadMeta(uploadId);
        if (meta is null)
        {
            if (File.Exists(CommittedPath(uploadId)))
            {
                return; // retried commit: already done
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
        if (RenamedIntoPlace(uploadId, meta))
        {
            // A crash (or kill) came between the rename and the marker: the commit happened; finish it.
            File.Move(MetaPath(uploadId), CommittedPath(uploadId), overwrite: true);
            return;
        }
        var dir = Path.GetDirectoryName(dest)!;
        Durable.CreateDirectory(dir);
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
        // The marker lets a retried commit see "committed". It is not fsync'd: after a crash the blob itself,
        // stamped with this version, is the durable evidence (recovery checks it).
        File.Move(MetaPath(uploadId), CommittedPath(uploadId), overwrite: true);
    }

    /// <summary>Abort: stop a receive in progress, drop the temp files. Idempotent; refuses a committed upload.</summary>
    public async Task AbortAsync(string uploadId)
    {
        CheckUploadId(uploadId);
        while (true)
        {
            ActiveUpload? active;
            lock (_uploadsLock)
            {
                if (!_busyUploads.TryGetValue(uploadId, out active))
                {
                    if ((File.Exists(CommittedPath(uploadId)) && !File.Exists(MetaPath(uploadId)))
                        || (ReadMeta(uploadId) is { } meta && RenamedIntoPlace(uploadId, meta)))
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
            return RenamedIntoPlace(uploadId, meta) ? new UploadStatus(uploadId, "committed", meta.Size, meta.Etag) : meta.ToStatus(uploadId);
        }
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

    /// <summary>Delete: record a tombstone at this version, then remove the blob if it is not newer. Idempotent.</summary>
    /// <param name="tombstone">false drops a replica copy (rebalance, gc of extras) without recording a delete</param>
    public void Delete(byte[] key, long version, bool tombstone = true)
    {
        var tomb = TombPath(key);
        if (tombstone && (!File.Exists(tomb) || ReadTombVersion(tomb) < version))
        {
            Durable.CreateDirectory(Path.GetDirectoryName(tomb)!);
            var content = Encoding.UTF8.GetBytes(version.ToString(System.Globalization.CultureInfo.InvariantCulture));
            if (KeyCodec.IsHashedName(Path.GetFileName(tomb)))
            {
                Durable.WriteAllBytes(tomb + ".key", key);
            }
            Durable.WriteAllBytes(tomb, content);
        }
        var path = BlobPath(key);
        if (File.Exists(path) && BlobVersion(path) <= version)
        {
            File.Delete(path);
            BlobRemoved?.Invoke(path);
            File.Delete(path + ".key");
            Durable.FsyncDirectory(Path.GetDirectoryName(path)!);
        }
    }

    /// <summary>
    /// Moves a blob that failed its checksum to quarantine/ (kept for inspection, never served or listed),
    /// so readers fail over and repair sees the replica as missing.
    /// </summary>
    public void Quarantine(byte[] key)
    {
        var path = BlobPath(key);
        var dir = Path.Combine(Root, "quarantine");
        Durable.CreateDirectory(dir);
        var dest = Path.Combine(dir, $"{Path.GetFileName(path)}.{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}");
        try
        {
            File.Move(path, dest);
            BlobRemoved?.Invoke(path);
            Durable.WriteAllBytes(dest + ".key", key);
            File.Delete(path + ".key");
            Durable.FsyncDirectory(Path.GetDirectoryName(path)!);
        }
        catch (FileNotFoundException)
        {
        }
    }

    /// <summary>Removes a tombstone marker (gc, after its TTL).</summary>
    public void PurgeTombstone(byte[] key)
    {
        var tomb = TombPath(key);
        File.Delete(tomb);
        File.Delete(tomb + ".key");
    }

    /// <summary>Size, version, tombstone and (with deep) a freshly computed BLAKE3 of a blob.</summary>
    public async Task<BlobInfo> InfoAsync(byte[] key, bool deep, CancellationToken ct)
    {
        var path = BlobPath(key);
        var tomb = TombPath(key);
        long? tombVersion = File.Exists(tomb) ? ReadTombVersion(tomb) : null;
        var fi = new FileInfo(path);
        if (!fi.Exists)
        {
            return new BlobInfo(false, 0, null, 0, tombVersion);
        }
        string? etag = null;
        if (deep)
        {
            await using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.Asynchronous | FileOptions.SequentialScan);
            var r = await StreamCopier.CopyAsync(fs, static (_, _) => ValueTask.CompletedTask, long.MaxValue, ct);
            etag = r.Etag;
        }
        return new BlobInfo(true, fi.Length, etag, TimeToVersion(fi.LastWriteTimeUtc), tombVersion) { StoredEtag = StoredEtag(path) };
    }

    /// <summary>BLAKE3 recorded at upload time, if the filesystem kept it.</summary>
    public static string? StoredEtag(string blobPath) => Xattr.TryGet(blobPath, EtagXattr);

    public static long BlobVersion(string path) => TimeToVersion(File.GetLastWriteTimeUtc(path));

    /// <summary>
    /// Lists blobs (and with tombstones=true, delete markers) in on-disk order. The cursor is the
    /// "aa/bb/name" path of the last entry returned, so each page walks only the folders it needs.
    /// </summary>
    public ListPage List(int limit, string? after, string? prefix, bool tombstones)
    {
        limit = Math.Clamp(limit, 1, 10_000);
        var prefixBytes = prefix is null ? null : Encoding.UTF8.GetBytes(prefix);
        var result = new List<ListEntry>();
        string? last = null;
        var root = tombstones ? TombsDir : BlobsDir;
        foreach (var rel in Walk(root, after))
        {
            var name = Path.GetFileName(rel);
            if (name.EndsWith(".key", StringComparison.Ordinal) || name.Contains(".tmp-", StringComparison.Ordinal))
            {
                continue;
            }
            var full = Path.Combine(root, rel);
            byte[] key;
            if (KeyCodec.IsHashedName(name))
            {
                if (!File.Exists(full + ".key"))
                {
                    continue;
                }
                key = File.ReadAllBytes(full + ".key");
            }
            else if (!KeyCodec.TryDecodeFileName(name, out key))
            {
                continue;
            }
            last = rel;
            if (prefixBytes is not null && !key.AsSpan().StartsWith(prefixBytes))
            {
                continue;
            }
            var fi = new FileInfo(full);
            if (!fi.Exists)
            {
                continue;
            }
            var entry = tombstones
                ? new ListEntry(KeyCodec.Encode(key), 0, ReadTombVersion(full), true)
                : new ListEntry(KeyCodec.Encode(key), fi.Length, TimeToVersion(fi.LastWriteTimeUtc), false);
            result.Add(entry);
            if (result.Count >= limit)
            {
                return new ListPage(result, last);
            }
        }
        return new ListPage(result, null);
    }

    /// <summary>Deletes temp files older than the given age. Returns (files, bytes) removed.</summary>
    public (int Files, long Bytes) SweepTmp(TimeSpan safeAge)
    {
        var cutoff = DateTime.UtcNow - safeAge;
        int files = 0;
        long bytes = 0;
        foreach (var f in new DirectoryInfo(TmpDir).EnumerateFiles())
        {
            var id = Path.GetFileNameWithoutExtension(f.Name);
            if (f.LastWriteTimeUtc > cutoff || _busyUploads.ContainsKey(id))
            {
                continue;
            }
            bytes += f.Length;
            f.Delete();
            files++;
        }
        // Stray ".tmp-" files from interrupted atomic writes inside blob folders are temp files too.
        foreach (var dir in new[] { BlobsDir, TombsDir })
        {
            foreach (var f in new DirectoryInfo(dir).EnumerateFiles("*.tmp-*", SearchOption.AllDirectories))
            {
                if (f.LastWriteTimeUtc <= cutoff)
                {
                    bytes += f.Length;
                    f.Delete();
                    files++;
                }
            }
        }
        return (files, bytes);
    }

    public long FreeBytes() => new DriveInfo(Root).AvailableFreeSpace;

    public long CapacityBytes() => new DriveInfo(Root).TotalSize;

    public static bool IsDiskFull(Exception? ex) =>
        ex is IOException io && (io.HResult == 28 || io.HResult == 112 || io.HResult == 39 || io.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase));

    public static DateTime VersionToTime(long version) => DateTime.UnixEpoch.AddTicks(version * 10);

    public static long TimeToVersion(DateTime t) => (t.ToUniversalTime() - DateTime.UnixEpoch).Ticks / 10;

    private static IEnumerable<string> Walk(string root, string? after)
    {
        var afterParts = after?.Split('/', 3);
        foreach (var a in SortedDirs(root))
        {
            var an = Path.GetFileName(a);
            if (afterParts is { Length: 3 } && string.CompareOrdinal(an, afterParts[0]) < 0)
            {
                continue;
            }
            foreach (var b in SortedDirs(a))
            {
                var bn = Path.GetFileName(b);
                var sameA = afterParts is { Length: 3 } && an == afterParts[0];
                if (sameA && string.CompareOrdinal(bn, afterParts![1]) < 0)
                {
                    continue;
                }
                var names = Directory.GetFiles(b).Select(Path.GetFileName).Order(StringComparer.Ordinal);
                foreach (var n in names)
                {
                    if (sameA && bn == afterParts![1] && string.CompareOrdinal(n, afterParts[2]) <= 0)
                    {
                        continue;
                    }
                    yield return an + "/" + bn + "/" + n;
                }
            }
        }
    }

    private static IEnumerable<string> SortedDirs(string dir) =>
        Directory.Exists(dir) ? Directory.GetDirectories(dir).Order(StringComparer.Ordinal) : [];

    private static long ReadTombVersion(string path)
    {
        try
        {
            return long.Parse(File.ReadAllText(path), System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (FormatException)
        {
            return long.MaxValue; // unreadable marker: safest to treat as newest delete
        }
    }

    private static void Truncate(string path)
    {
        using var h = File.OpenHandle(path, FileMode.Create, FileAccess.Write);
    }

    private static void CheckUploadId(string uploadId)
    {
        if (uploadId.Length is 0 or > 64 || !uploadId.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            throw new VolumeException(400, ApiError.Codes.InvalidArgument, "upload_id must be 1-64 characters of [A-Za-z0-9_-]");
        }
    }

    private static VolumeException UnknownUpload(string uploadId) =>
        new(StatusCodes.Status404NotFound, ApiError.Codes.UnknownUpload, $"no upload {uploadId} on this volume");

    private UploadMeta? ReadMeta(string uploadId)
    {
        try
        {
            return JsonSerializer.Deserialize<UploadMeta>(File.ReadAllBytes(MetaPath(uploadId)), Json);
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

    /// <summary>Upload state: atomic (temp + rename) but not fsync'd, see Commit.</summary>
    private void WriteMeta(string uploadId, UploadMeta meta)
    {
        var path = MetaPath(uploadId);
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        File.WriteAllBytes(tmp, JsonSerializer.SerializeToUtf8Bytes(meta, Json));
        File.Move(tmp, path, overwrite: true);
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
