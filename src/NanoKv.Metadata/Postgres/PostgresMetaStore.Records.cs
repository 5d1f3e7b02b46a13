using Npgsql;

namespace NanoKv.Metadata.Postgres;

/// <summary>The record tables (and node records, owed deletes) in nanokv_records, one space id each.</summary>
public sealed partial class PostgresMetaStore
{
    private const string Upsert = "INSERT INTO nanokv_records (space, k, v) VALUES ($1, $2, $3) ON CONFLICT (space, k) DO UPDATE SET v = excluded.v";
    private const string DeleteSql = "DELETE FROM nanokv_records WHERE space = $1 AND k = $2";

    public T? GetRecord<T>(RecordTable table, ReadOnlySpan<byte> key)
        where T : class
    {
        var k = key.ToArray();
        var v = _retry.Run("get record", (conn, _) => Scalar<byte[]>(conn, "SELECT v FROM nanokv_records WHERE space = $1 AND k = $2", (short)table, k));
        return v is null ? null : MetaCodec.Decode<T>(v);
    }

    public void PutRecord<T>(RecordTable table, ReadOnlySpan<byte> key, T value, bool sync = true) => PutRaw((short)table, key.ToArray(), MetaCodec.Encode(value));

    public void DeleteRecord(RecordTable table, ReadOnlySpan<byte> key) => DeleteRaw((short)table, key.ToArray());

    public void WriteRecords(Action<RecordBatch> build)
    {
        var records = new RecordBatch();
        build(records);
        if (records.Operations.Count == 0)
        {
            return;
        }
        _retry.Run("write records", (conn, _) =>
        {
            // One batch = one implicit transaction: all the writes or none.
            using var batch = new NpgsqlBatch(conn);
            foreach (var (table, key, value) in records.Operations)
            {
                batch.BatchCommands.Add(value is null ? Command(DeleteSql, (short)table, key) : Command(Upsert, (short)table, key, value));
            }
            return batch.ExecuteNonQuery();
        });
    }

    public bool CompareAndSwapRecord<T>(RecordTable table, byte[] key, T? expected, T? next)
        where T : class
    {
        var old = expected is null ? null : MetaCodec.Encode(expected);
        var value = next is null ? null : MetaCodec.Encode(next);
        var space = (short)table;
        return _retry.Run("compare-and-swap record", (conn, attempt) =>
        {
            if (old is null && value is null)
            {
                return Scalar<byte[]>(conn, "SELECT v FROM nanokv_records WHERE space = $1 AND k = $2", space, key) is null;
            }
            var changed = (old, value) switch
            {
                (null, not null) => Exec(conn, "INSERT INTO nanokv_records (space, k, v) VALUES ($1, $2, $3) ON CONFLICT (space, k) DO NOTHING", space, key, value),
                (not null, null) => Exec(conn, "DELETE FROM nanokv_records WHERE space = $1 AND k = $2 AND v = $3", space, key, old),
                _ => Exec(conn, "UPDATE nanokv_records SET v = $4 WHERE space = $1 AND k = $2 AND v = $3", space, key, old!, value!),
            };
            if (changed == 1)
            {
                return true;
            }
            // A retry after a lost reply: the earlier attempt may have committed; seeing exactly our value means it did.
            return attempt > 0 && value is not null
                && Scalar<byte[]>(conn, "SELECT v FROM nanokv_records WHERE space = $1 AND k = $2", space, key) is { } now && now.AsSpan().SequenceEqual(value);
        });
    }

    public IEnumerable<(byte[] Key, T Value)> ScanRecords<T>(RecordTable table, byte[] prefix, byte[]? from = null, byte[]? after = null)
        where T : class
    {
        var lower = prefix;
        var inclusive = true;
        if (from is not null && from.AsSpan().SequenceCompareTo(prefix) > 0)
        {
            lower = from;
        }
        if (after is not null && after.AsSpan().SequenceCompareTo(lower) >= 0)
        {
            lower = after;
            inclusive = false;
        }
        return PagedRecords((short)table, lower, inclusive, KeyRange.Successor(prefix)).Select(r => (r.Key, MetaCodec.Decode<T>(r.Value)));
    }

    private IEnumerable<(byte[] Key, byte[] Value)> PagedRecords(short space, byte[] from, bool inclusive, byte[]? before) =>
        Paged($"SELECT k, v FROM nanokv_records WHERE space = {space}", from, inclusive, before);

    private void PutRaw(short space, byte[] key, byte[] value) => _retry.Run("put record", (conn, _) => Exec(conn, Upsert, space, key, value));

    private void DeleteRaw(short space, byte[] key) => _retry.Run("delete record", (conn, _) => Exec(conn, DeleteSql, space, key));
}
