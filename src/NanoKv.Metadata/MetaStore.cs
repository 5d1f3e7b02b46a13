using System.Text;
using System.Text.Json.Serialization;
using RocksDbSharp;

namespace NanoKv.Metadata;

/// <summary>Lifecycle of an object's metadata.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ObjectState>))]
public enum ObjectState
{
    Pending,
    Committed,
    Tombstoned,
}

/// <summary>What the coordinator knows about one key.</summary>
public sealed record ObjectMeta
{
    public ObjectState State { get; init; }

    public long Size { get; init; }

    public string Etag { get; init; } = "";

    public List<string> Replicas { get; init; } = [];

    public string UploadId { get; init; } = "";

    /// <summary>Write version (Unix µs from the coordinator's clock); volumes stamp blobs and tombstones with it.</summary>
    public long Version { get; init; }

    public long CreatedMs { get; init; }

    public long UpdatedMs { get; init; }

    /// <summary>Pending writes: id of the coordinator running (or resolving) the write; "" on older records.</summary>
    public string Owner { get; init; } = "";

    /// <summary>
    /// Pending writes: the owner's lease (Unix ms). Past it any coordinator may claim and resolve the write;
    /// 0 = no lease (older records: resolvable at once). Part of what compare-and-swap compares, so a claim
    /// or renewal is itself a swap and two coordinators never both hold a write.
    /// </summary>
    public long LeaseUntilMs { get; init; }
}

/// <summary>
/// A volume the coordinator has heard of, persisted so a restart remembers joined nodes. On shared metadata it
/// also carries the cluster's one health verdict for the node: the freshest observation any coordinator made.
/// </summary>
public sealed record NodeRecord(string NodeId, string Url)
{
    /// <summary>The verdict; null = none published (RocksDB, or nobody observed the node yet).</summary>
    public NodeVerdict? Verdict { get; init; }

    /// <summary>When the verdict's observation was made (Unix ms): a probe or heartbeat answer, or a failure.</summary>
    public long ObservedMs { get; init; }

    /// <summary>Id of the coordinator that made the observation.</summary>
    public string By { get; init; } = "";
}

/// <summary>A node's health as one coordinator observed it and published it for the others.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<NodeVerdict>))]
public enum NodeVerdict
{
    Alive,
    Suspect,
    Down,
}

/// <summary>
/// RocksDB metadata. Key layout: "m/"+key → object meta; "p/"+key → marker for pending writes (so restart
/// finds them without a full scan); "n/"+node id → node record; "s/version" → version high-water mark.
/// Values are one format byte (1) followed by UTF-8 JSON, so the encoding can evolve (<see cref="MetaCodec"/>).
/// </summary>
public sealed partial class MetaStore : IMetaStore
{
    private static readonly byte[] MetaPrefix = "m/"u8.ToArray();
    private static readonly byte[] PendingPrefix = "p/"u8.ToArray();
    private static readonly byte[] NodePrefix = "n/"u8.ToArray();
    private static readonly byte[] OwedDeletePrefix = "d/"u8.ToArray();
    private static readonly byte[] VersionKey = "s/version"u8.ToArray();
    private readonly RocksDb _db;
    private readonly WriteOptions _sync = new WriteOptions().SetSync(true);
    private readonly WriteOptions _noSync = new WriteOptions().SetSync(false);
    private readonly KeyLocks _locks = new();

    // Compare-and-swap takes its own (synchronous, short) stripes, so a caller already holding LockAsync for the
    // key can still call it without deadlocking.
    private readonly object[] _casStripes = [.. Enumerable.Range(0, 256).Select(_ => new object())];

    private MetaStore(RocksDb db) => _db = db;

    public string Backend => "rocksdb";

    /// <summary>Opens (creating) the index; a clear message when another process holds it.</summary>
    public static MetaStore Open(string dir)
    {
        Directory.CreateDirectory(dir);
        var options = new DbOptions().SetCreateIfMissing(true).SetKeepLogFileNum(3);
        try
        {
            return new MetaStore(RocksDb.Open(options, Path.GetFullPath(dir)));
        }
        catch (RocksDbException ex) when (ex.Message.Contains("lock", StringComparison.OrdinalIgnoreCase))
        {
            throw new InvalidOperationException(
                $"the index at {dir} is locked by another process (is a coordinator running on it? RocksDB allows one writer; stop it or use --coord URL)", ex);
        }
    }

    public ObjectMeta? Get(ReadOnlySpan<byte> key)
    {
        var v = _db.Get(Concat(MetaPrefix, key));
        return v is null ? null : Decode<ObjectMeta>(v);
    }

    /// <summary>Writes meta (fsync'd WAL unless sync is false), maintaining the pending index and the version high-water mark.</summary>
    public void Put(ReadOnlySpan<byte> key, ObjectMeta meta, bool sync = true)
    {
        using var batch = new WriteBatch();
        batch.Put(Concat(MetaPrefix, key), Encode(meta));
        if (meta.State == ObjectState.Pending)
        {
            batch.Put(Concat(PendingPrefix, key), Array.Empty<byte>());
        }
        else
        {
            batch.Delete(Concat(PendingPrefix, key));
        }
        if (meta.Version > _highWater)
        {
            _highWater = meta.Version;
            batch.Put(VersionKey, BitConverter.GetBytes(meta.Version));
        }
        _db.Write(batch, sync ? _sync : _noSync);
    }

    private long _highWater;

    /// <summary>Highest version ever written, so the clock never goes back across restarts.</summary>
    public long VersionHighWater()
    {
        var v = _db.Get(VersionKey);
        _highWater = v is { Length: 8 } ? BitConverter.ToInt64(v) : 0;
        return _highWater;
    }

    public void RaiseVersionHighWater(long version)
    {
        if (version > VersionHighWater())
        {
            _highWater = version;
            _db.Put(VersionKey, BitConverter.GetBytes(version), writeOptions: _sync);
        }
    }

    /// <summary>
    /// Per-key lock (striped) for read-check-write sequences. The PUT/DELETE path and the ops commands both
    /// take it, so a repair or rebalance never overwrites metadata a concurrent write just changed.
    /// </summary>
    public Task<IDisposable> LockAsync(byte[] key) => _locks.LockAsync(key);

    public Task<IDisposable> LockAllAsync(IReadOnlyList<byte[]> keys) => _locks.LockAllAsync(keys);

    public bool CompareAndSwap(byte[] key, ObjectMeta? expected, ObjectMeta? next, bool sync = true)
    {
        lock (_casStripes[KeyLocks.Stripe(key, _casStripes.Length)])
        {
            if (!MetaCodec.SameWrite(Get(key), expected))
            {
                return false;
            }
            if (next is null)
            {
                Remove(key);
            }
            else
            {
                Put(key, next, sync);
            }
            return true;
        }
    }

    /// <summary>Replaces the meta of a key only if it still equals `expected` (same state, upload and version).</summary>
    public async Task<bool> UpdateIfUnchangedAsync(byte[] key, ObjectMeta expected, ObjectMeta? next)
    {
        // LockAsync as before (excludes this process's read-check-write sequences), then the atomic swap.
        using (await LockAsync(key))
        {
            return CompareAndSwap(key, expected, next);
        }
    }

    public void Remove(ReadOnlySpan<byte> key)
    {
        using var batch = new WriteBatch();
        batch.Delete(Concat(MetaPrefix, key));
        batch.Delete(Concat(PendingPrefix, key));
        _db.Write(batch, _sync);
    }

    /// <summary>Keys with a pending write (left by a crash when read at startup).</summary>
    public List<byte[]> PendingKeys() => ScanKeys(PendingPrefix, null).Select(e => e.Key).ToList();

    /// <summary>Marks a tombstoned key whose delete has not reached every replica yet.</summary>
    public void MarkDeleteOwed(ReadOnlySpan<byte> key) => _db.Put(Concat(OwedDeletePrefix, key), Array.Empty<byte>(), writeOptions: _sync);

    public void ClearDeleteOwed(ReadOnlySpan<byte> key) => _db.Remove(Concat(OwedDeletePrefix, key), writeOptions: _sync);

    public List<byte[]> OwedDeleteKeys() => ScanKeys(OwedDeletePrefix, null).Select(e => e.Key).ToList();

    /// <summary>All object metas in key order, starting after the given key.</summary>
    public IEnumerable<(byte[] Key, ObjectMeta Meta)> Scan(byte[]? after = null)
    {
        foreach (var (key, value) in ScanKeys(MetaPrefix, after))
        {
            yield return (key, Decode<ObjectMeta>(value));
        }
    }

    /// <summary>Object metas whose key starts with prefix, in key order, after the given key (the public listing).</summary>
    public IEnumerable<(byte[] Key, ObjectMeta Meta)> Scan(byte[] prefix, byte[]? after)
    {
        var from = after is not null && after.AsSpan().SequenceCompareTo(prefix) > 0 ? after : null;
        // Seek to the prefix itself when there is no later cursor, so a key equal to the prefix is listed.
        using var it = _db.NewIterator();
        it.Seek(Concat(MetaPrefix, from ?? prefix));
        for (; it.Valid(); it.Next())
        {
            var k = it.Key();
            if (!k.AsSpan().StartsWith(MetaPrefix) || !k.AsSpan(MetaPrefix.Length).StartsWith(prefix))
            {
                yield break;
            }
            var userKey = k[MetaPrefix.Length..];
            if (from is null || !userKey.AsSpan().SequenceEqual(from))
            {
                yield return (userKey, Decode<ObjectMeta>(it.Value()));
            }
        }
    }

    /// <summary>A RocksDB property ("rocksdb.total-sst-files-size", ...) for metrics; null when unknown.</summary>
    public string? Property(string name) => _db.GetProperty(name);

    public void PutNode(NodeRecord node) => _db.Put(Concat(NodePrefix, Encoding.UTF8.GetBytes(node.NodeId)), Encode(node), writeOptions: _sync);

    public List<NodeRecord> Nodes() => ScanKeys(NodePrefix, null).Select(e => Decode<NodeRecord>(e.Value)).ToList();

    public void Dispose()
    {
        _db.Dispose();
    }

    private IEnumerable<(byte[] Key, byte[] Value)> ScanKeys(byte[] prefix, byte[]? after)
    {
        using var it = _db.NewIterator();
        it.Seek(after is null ? prefix : Concat(prefix, after));
        while (it.Valid())
        {
            var k = it.Key();
            if (!k.AsSpan().StartsWith(prefix))
            {
                yield break;
            }
            var userKey = k[prefix.Length..];
            if (after is null || !userKey.AsSpan().SequenceEqual(after))
            {
                yield return (userKey, it.Value());
            }
            it.Next();
        }
    }

    private static byte[] Encode<T>(T value) => MetaCodec.Encode(value);

    private static T Decode<T>(byte[] value) => MetaCodec.Decode<T>(value);

    private static byte[] Concat(byte[] prefix, ReadOnlySpan<byte> key)
    {
        var buf = new byte[prefix.Length + key.Length];
        prefix.CopyTo(buf, 0);
        key.CopyTo(buf.AsSpan(prefix.Length));
        return buf;
    }
}
