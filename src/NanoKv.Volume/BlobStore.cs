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
public sealed partial class BlobStore
{
    private const string EtagXattr = "user.nanokv.etag";
    private const string UploadXattr = "user.nanokv.upload";
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly ConcurrentDictionary<string, ActiveUpload> _busyUploads = new();
    private readonly Lock _uploadsLock = new();
    private readonly RecentCommits _recent = new(4096);

    /// <param name="stateInXattr">null: upload state in an xattr where the filesystem supports it</param>
    public BlobStore(string root, bool? stateInXattr = null)
    {
        Root = Path.GetFullPath(root);
        BlobsDir = Path.Combine(Root, "blobs");
        TmpDir = Path.Combine(Root, "tmp");
        TombsDir = Path.Combine(Root, "tombs");
        Durable.CreateDirectory(Root);
        DirPlacement.MarkTopDirectory(Root);
        DirPlacement.CreateSpread(BlobsDir);
        DirPlacement.MarkTopDirectory(BlobsDir);
        DirPlacement.CreateSpread(TmpDir);
        Durable.CreateDirectory(TombsDir);
        StateInXattr = stateInXattr ?? Xattr.Supported(TmpDir);
    }

    /// <summary>
    /// Where an upload's state lives: true, an xattr on its temp data file (one inode per upload, which becomes
    /// the blob); false (no user xattrs here), a JSON file beside it. A second short-lived inode per write
    /// cost a quarter of a volume's CPU in 1 MiB PUTs: ext4's allocator (__ext4_new_inode) scans for free
    /// inodes, skipping recently deleted ones.
    /// </summary>
    public bool StateInXattr { get; }

    public string Root { get; }

    /// <summary>Called with a blob's path after it left blobs/ or was replaced (the read path drops its pin).</summary>
    public Action<string>? BlobRemoved { get; set; }

    /// <summary>Called after each upload's body is written, with how it was written (the volume counts them).</summary>
    public Action<FileWrite>? UploadWritten { get; set; }

    public string BlobsDir { get; }

    public string TmpDir { get; }

    public string TombsDir { get; }

    /// <summary>Path of the committed blob for a key (which may not exist).</summary>
    public string BlobPath(byte[] key) => Path.Combine(BlobsDir, KeyCodec.BlobRelativePath(key));

    private string TombPath(byte[] key) => Path.Combine(TombsDir, KeyCodec.BlobRelativePath(key));

    private string DataPath(string uploadId) => Path.Combine(TmpDir, uploadId + ".data");

    private string MetaPath(string uploadId) => Path.Combine(TmpDir, uploadId + ".json");

    private string CommittedPath(string uploadId) => Path.Combine(TmpDir, uploadId + ".committed");

    /// <summary>Delete: record a tombstone at this version, then remove the blob if it is not newer. Idempotent.</summary>
    /// <param name="tombstone">false drops a replica copy (rebalance, gc of extras) without recording a delete</param>
    public void Delete(byte[] key, long version, bool tombstone = true)
    {
        var tomb = TombPath(key);
        if (tombstone && (!File.Exists(tomb) || ReadTombVersion(tomb) < version))
        {
            MakeFolder(Path.GetDirectoryName(tomb)!, TombsDir);
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
}
