namespace NanoKv.Metadata;

/// <summary>
/// The coordinator's metadata: object metas (with the pending index and the version high-water mark), owed
/// deletes, node records and the S3 record tables. Every single operation is atomic; read-check-write
/// sequences that must hold across coordinators use <see cref="CompareAndSwap"/> or
/// <see cref="CompareAndSwapRecord{T}"/>, never <see cref="LockAsync"/> alone (it only excludes callers in
/// this process). Keys are raw bytes and every scan is in byte order.
/// </summary>
public interface IMetaStore : IDisposable
{
    /// <summary>"rocksdb" or "postgres", for logs and the health endpoint.</summary>
    string Backend { get; }

    ObjectMeta? Get(ReadOnlySpan<byte> key);

    /// <summary>Writes meta (durable unless sync is false), maintaining the pending index and the version high-water mark.</summary>
    void Put(ReadOnlySpan<byte> key, ObjectMeta meta, bool sync = true);

    void Remove(ReadOnlySpan<byte> key);

    /// <summary>
    /// Atomically replaces the meta of key when it currently equals expected (same State, UploadId, Version and
    /// LeaseUntilMs; null = the key must be absent). next null removes the key. Maintains the pending index and
    /// the version high-water mark like <see cref="Put"/>. True when this call made the change. sync false
    /// lets RocksDB skip the WAL fsync (a hint, like <see cref="Put"/>'s).
    /// </summary>
    bool CompareAndSwap(byte[] key, ObjectMeta? expected, ObjectMeta? next, bool sync = true);

    /// <summary>Replaces the meta of a key only if it still equals expected (see <see cref="CompareAndSwap"/>); false when absent.</summary>
    Task<bool> UpdateIfUnchangedAsync(byte[] key, ObjectMeta expected, ObjectMeta? next);

    /// <summary>Highest version ever written (never goes back, also across restarts and coordinators).</summary>
    long VersionHighWater();

    /// <summary>Raises the version high-water mark to at least version (a migration, a clock seen elsewhere); never lowers it.</summary>
    void RaiseVersionHighWater(long version);

    /// <summary>In-process striped per-key lock: cheap exclusion between callers of this process only.</summary>
    Task<IDisposable> LockAsync(byte[] key);

    /// <summary>Locks several keys at once (never nest LockAsync calls: two keys may share a stripe; see <see cref="KeyLocks"/>).</summary>
    Task<IDisposable> LockAllAsync(IReadOnlyList<byte[]> keys);

    /// <summary>Keys with a pending write, in key order.</summary>
    List<byte[]> PendingKeys();

    /// <summary>Marks a tombstoned key whose delete has not reached every replica yet.</summary>
    void MarkDeleteOwed(ReadOnlySpan<byte> key);

    void ClearDeleteOwed(ReadOnlySpan<byte> key);

    List<byte[]> OwedDeleteKeys();

    /// <summary>All object metas in key order, after the given key.</summary>
    IEnumerable<(byte[] Key, ObjectMeta Meta)> Scan(byte[]? after = null);

    /// <summary>Object metas whose key starts with prefix, in key order, after the given key (ignored unless it sorts after prefix).</summary>
    IEnumerable<(byte[] Key, ObjectMeta Meta)> Scan(byte[] prefix, byte[]? after);

    /// <summary>A backend property for metrics ("rocksdb.total-sst-files-size", ...); null when unknown.</summary>
    string? Property(string name);

    void PutNode(NodeRecord node);

    /// <summary>Known nodes, ordered by node id bytes.</summary>
    List<NodeRecord> Nodes();

    T? GetRecord<T>(RecordTable table, ReadOnlySpan<byte> key)
        where T : class;

    /// <summary>Writes one record, durable unless sync is false.</summary>
    void PutRecord<T>(RecordTable table, ReadOnlySpan<byte> key, T value, bool sync = true);

    void DeleteRecord(RecordTable table, ReadOnlySpan<byte> key);

    /// <summary>Several record writes and deletes applied atomically (all or none), durably.</summary>
    void WriteRecords(Action<RecordBatch> build);

    /// <summary>
    /// Atomically replaces a record when its current encoded bytes equal expected's (null = must be absent);
    /// next null deletes it. True when this call made the change.
    /// </summary>
    bool CompareAndSwapRecord<T>(RecordTable table, byte[] key, T? expected, T? next)
        where T : class;

    /// <summary>Records whose key starts with prefix, in key order, from the first key ≥ from (or after `after` when given).</summary>
    IEnumerable<(byte[] Key, T Value)> ScanRecords<T>(RecordTable table, byte[] prefix, byte[]? from = null, byte[]? after = null)
        where T : class;
}
