using System.Text;
using Npgsql;

namespace NanoKv.Metadata.Postgres;

/// <summary>
/// Metadata in PostgreSQL (or a PostgreSQL-protocol database: CockroachDB, YugabyteDB). Plain SQL, every
/// operation one statement or one implicit-transaction batch, keys as bytea (ordered by bytes). Conditional
/// writes are single conditional statements (INSERT ... ON CONFLICT DO NOTHING, UPDATE/DELETE ... WHERE),
/// so they are atomic across coordinators. See docs/metadata-backends.md.
/// </summary>
public sealed partial class PostgresMetaStore : IMetaStore
{
    private const int PageSize = 500;
    private const string VersionBump = "UPDATE nanokv_counters SET v = GREATEST(v, $1) WHERE name = 'version'";
    private readonly NpgsqlDataSource _source;
    private readonly PostgresRetry _retry;
    private readonly KeyLocks _locks = new();
    private long _highWater;

    private PostgresMetaStore(NpgsqlDataSource source, TimeSpan retryTimeBox)
    {
        _source = source;
        _retry = new PostgresRetry(source, retryTimeBox);
    }

    public string Backend => "postgres";

    /// <summary>Connects (pooled), creates or migrates the schema; unreachable → <see cref="MetaStoreUnavailableException"/>.</summary>
    public static PostgresMetaStore Open(string dsn, TimeSpan? retryTimeBox = null)
    {
        var (connectionString, timeBox) = PostgresDsn.Parse(dsn);
        var store = new PostgresMetaStore(NpgsqlDataSource.Create(connectionString), retryTimeBox ?? timeBox);
        try
        {
            PostgresSchema.Migrate(store._retry);
            return store;
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    public ObjectMeta? Get(ReadOnlySpan<byte> key)
    {
        var k = key.ToArray();
        var value = _retry.Run("get", (conn, _) => Scalar<byte[]>(conn, "SELECT meta FROM nanokv_objects WHERE k = $1", k));
        return value is null ? null : MetaCodec.Decode<ObjectMeta>(value);
    }

    /// <summary>Durable on commit whatever sync says (the database decides; synchronous_commit stays on).</summary>
    public void Put(ReadOnlySpan<byte> key, ObjectMeta meta, bool sync = true)
    {
        var k = key.ToArray();
        var value = MetaCodec.Encode(meta);
        _retry.Run("put", (conn, _) =>
        {
            using var batch = new NpgsqlBatch(conn);
            batch.BatchCommands.Add(Command(
                "INSERT INTO nanokv_objects (k, state, upload_id, ver, meta, lease) VALUES ($1, $2, $3, $4, $5, $6) "
                + "ON CONFLICT (k) DO UPDATE SET state = excluded.state, upload_id = excluded.upload_id, ver = excluded.ver, meta = excluded.meta, lease = excluded.lease",
                k, (short)meta.State, meta.UploadId, meta.Version, value, meta.LeaseUntilMs));
            AddVersionBump(batch, meta.Version);
            return batch.ExecuteNonQuery(); // one implicit transaction: the meta and the high-water mark together
        });
        NoteVersion(meta.Version);
    }

    public void Remove(ReadOnlySpan<byte> key)
    {
        var k = key.ToArray();
        _retry.Run("remove", (conn, _) => Exec(conn, "DELETE FROM nanokv_objects WHERE k = $1", k));
    }

    public bool CompareAndSwap(byte[] key, ObjectMeta? expected, ObjectMeta? next, bool sync = true)
    {
        var value = next is null ? null : MetaCodec.Encode(next);
        var swapped = _retry.Run("compare-and-swap", (conn, attempt) =>
        {
            using var batch = new NpgsqlBatch(conn);
            batch.BatchCommands.Add((expected, next) switch
            {
                (null, null) => Command("SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM nanokv_objects WHERE k = $1)", key),
                (null, not null) => Command(
                    "INSERT INTO nanokv_objects (k, state, upload_id, ver, meta, lease) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (k) DO NOTHING",
                    key, (short)next.State, next.UploadId, next.Version, value!, next.LeaseUntilMs),
                (not null, null) => Command(
                    "DELETE FROM nanokv_objects WHERE k = $1 AND state = $2 AND upload_id = $3 AND ver = $4 AND lease = $5",
                    key, (short)expected.State, expected.UploadId, expected.Version, expected.LeaseUntilMs),
                (not null, not null) => Command(
                    "UPDATE nanokv_objects SET state = $6, upload_id = $7, ver = $8, meta = $9, lease = $10 "
                    + "WHERE k = $1 AND state = $2 AND upload_id = $3 AND ver = $4 AND lease = $5",
                    key, (short)expected.State, expected.UploadId, expected.Version, expected.LeaseUntilMs, (short)next.State, next.UploadId, next.Version, value!, next.LeaseUntilMs),
            });
            if (next is not null)
            {
                AddVersionBump(batch, next.Version); // harmless when the swap loses: that version was issued anyway
            }
            if (expected is null && next is null)
            {
                return batch.ExecuteScalar() is not null;
            }
            batch.ExecuteNonQuery();
            if (batch.BatchCommands[0].RecordsAffected == 1)
            {
                return true;
            }
            // A retry after a lost reply: the earlier attempt may have committed; seeing exactly our write means it did.
            return attempt > 0 && next is not null && MetaCodec.SameWrite(ReadMeta(conn, key), next);
        });
        if (swapped && next is not null)
        {
            NoteVersion(next.Version);
        }
        return swapped;
    }

    public async Task<bool> UpdateIfUnchangedAsync(byte[] key, ObjectMeta expected, ObjectMeta? next)
    {
        using (await LockAsync(key))
        {
            return CompareAndSwap(key, expected, next);
        }
    }

    public long VersionHighWater()
    {
        var v = _retry.Run("version high-water", (conn, _) => Scalar<long?>(conn, "SELECT v FROM nanokv_counters WHERE name = 'version'"));
        _highWater = Math.Max(Interlocked.Read(ref _highWater), v ?? 0);
        return v ?? 0;
    }

    public void RaiseVersionHighWater(long version)
    {
        _retry.Run("raise version high-water", (conn, _) => Exec(conn, VersionBump, version));
        NoteVersion(version);
    }

    public Task<IDisposable> LockAsync(byte[] key) => _locks.LockAsync(key);

    public Task<IDisposable> LockAllAsync(IReadOnlyList<byte[]> keys) => _locks.LockAllAsync(keys);

    public List<byte[]> PendingKeys() =>
        PagedObjects("SELECT k, meta FROM nanokv_objects WHERE state = 0", [], true, null).Select(r => r.Key).ToList();

    public void MarkDeleteOwed(ReadOnlySpan<byte> key) => PutRaw(PostgresSchema.OwedDeletesSpace, key.ToArray(), []);

    public void ClearDeleteOwed(ReadOnlySpan<byte> key) => DeleteRaw(PostgresSchema.OwedDeletesSpace, key.ToArray());

    public List<byte[]> OwedDeleteKeys() => PagedRecords(PostgresSchema.OwedDeletesSpace, [], true, null).Select(r => r.Key).ToList();

    public IEnumerable<(byte[] Key, ObjectMeta Meta)> Scan(byte[]? after = null) =>
        PagedObjects("SELECT k, meta FROM nanokv_objects WHERE TRUE", after ?? [], after is null, null)
            .Select(r => (r.Key, MetaCodec.Decode<ObjectMeta>(r.Value)));

    public IEnumerable<(byte[] Key, ObjectMeta Meta)> Scan(byte[] prefix, byte[]? after)
    {
        var useAfter = after is not null && after.AsSpan().SequenceCompareTo(prefix) > 0;
        return PagedObjects("SELECT k, meta FROM nanokv_objects WHERE TRUE", useAfter ? after! : prefix, !useAfter, KeyRange.Successor(prefix))
            .Select(r => (r.Key, MetaCodec.Decode<ObjectMeta>(r.Value)));
    }

    public string? Property(string name) => null;

    public void PutNode(NodeRecord node) => PutRaw(PostgresSchema.NodesSpace, Encoding.UTF8.GetBytes(node.NodeId), MetaCodec.Encode(node));

    public List<NodeRecord> Nodes() => PagedRecords(PostgresSchema.NodesSpace, [], true, null).Select(r => MetaCodec.Decode<NodeRecord>(r.Value)).ToList();

    public void Dispose() => _source.Dispose();

    private void NoteVersion(long version)
    {
        long seen;
        while (version > (seen = Interlocked.Read(ref _highWater)) && Interlocked.CompareExchange(ref _highWater, version, seen) != seen)
        {
        }
    }

    private void AddVersionBump(NpgsqlBatch batch, long version)
    {
        if (version > Interlocked.Read(ref _highWater))
        {
            batch.BatchCommands.Add(Command(VersionBump, version));
        }
    }

    private static ObjectMeta? ReadMeta(NpgsqlConnection conn, byte[] key) =>
        Scalar<byte[]>(conn, "SELECT meta FROM nanokv_objects WHERE k = $1", key) is { } v ? MetaCodec.Decode<ObjectMeta>(v) : null;

    /// <summary>Rows of a key-ordered query in pages (keyset pagination): no connection is held between pages.</summary>
    private IEnumerable<(byte[] Key, byte[] Value)> PagedObjects(string select, byte[] from, bool inclusive, byte[]? before) =>
        Paged(select, from, inclusive, before);

    /// <summary>select must return (k, value) and end in a WHERE clause the key bounds are ANDed to.</summary>
    private IEnumerable<(byte[] Key, byte[] Value)> Paged(string select, byte[] from, bool inclusive, byte[]? before)
    {
        var cursor = from;
        while (true)
        {
            var lowerBound = inclusive ? "k >= $1" : "k > $1";
            var upperBound = before is null ? "" : " AND k < $2";
            var sql = $"{select} AND {lowerBound}{upperBound} ORDER BY k LIMIT {PageSize}";
            var bound = cursor;
            var page = _retry.Run("scan", (conn, _) =>
            {
                using var cmd = new NpgsqlCommand(sql, conn);
                cmd.Parameters.Add(new NpgsqlParameter { Value = bound });
                if (before is not null)
                {
                    cmd.Parameters.Add(new NpgsqlParameter { Value = before });
                }
                var rows = new List<(byte[], byte[])>(PageSize);
                using var reader = cmd.ExecuteReader();
                while (reader.Read())
                {
                    rows.Add((reader.GetFieldValue<byte[]>(0), reader.GetFieldValue<byte[]>(1)));
                }
                return rows;
            });
            foreach (var row in page)
            {
                yield return row;
            }
            if (page.Count < PageSize)
            {
                yield break;
            }
            cursor = page[^1].Item1;
            inclusive = false;
        }
    }

    private static NpgsqlBatchCommand Command(string sql, params object[] args)
    {
        var cmd = new NpgsqlBatchCommand(sql);
        foreach (var a in args)
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = a });
        }
        return cmd;
    }

    private static int Exec(NpgsqlConnection conn, string sql, params object[] args)
    {
        using var cmd = new NpgsqlCommand(sql, conn);
        foreach (var a in args)
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = a });
        }
        return cmd.ExecuteNonQuery();
    }

    private static T? Scalar<T>(NpgsqlConnection conn, string sql, params object[] args)
    {
        using var cmd = new NpgsqlCommand(sql, conn);
        foreach (var a in args)
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = a });
        }
        var v = cmd.ExecuteScalar();
        return v is null or DBNull ? default : (T)v;
    }

    private sealed class Releaser(SemaphoreSlim s) : IDisposable
    {
        public void Dispose() => s.Release();
    }
}
