using RocksDbSharp;

namespace NanoKv.Metadata;

/// <summary>The record tables beside object metas: buckets, S3 objects, multipart uploads and parts.</summary>
public enum RecordTable
{
    /// <summary>"b/"+bucket → <see cref="BucketRecord"/>.</summary>
    Buckets,

    /// <summary>"o/"+bucket+"/"+key → <see cref="S3ObjectRecord"/>.</summary>
    S3Objects,

    /// <summary>"u/"+bucket+"/"+upload id → <see cref="MultipartRecord"/>.</summary>
    Uploads,

    /// <summary>"q/"+upload id+"/"+part number (5 digits) → <see cref="PartRecord"/>.</summary>
    Parts,

    /// <summary>"l/"+name → a cluster-wide lease (e.g. "ops": the running live ops job), one holder at a time.</summary>
    Leases,
}

public sealed partial class MetaStore
{
    private static readonly byte[][] TablePrefixes = ["b/"u8.ToArray(), "o/"u8.ToArray(), "u/"u8.ToArray(), "q/"u8.ToArray(), "l/"u8.ToArray()];

    private static byte[] Prefix(RecordTable table) => TablePrefixes[(int)table];

    public T? GetRecord<T>(RecordTable table, ReadOnlySpan<byte> key)
        where T : class
    {
        var v = _db.Get(Concat(Prefix(table), key));
        return v is null ? null : Decode<T>(v);
    }

    /// <summary>Writes one record, fsync'd (WAL) unless sync is false.</summary>
    public void PutRecord<T>(RecordTable table, ReadOnlySpan<byte> key, T value, bool sync = true) =>
        _db.Put(Concat(Prefix(table), key), Encode(value), writeOptions: sync ? _sync : _noSync);

    public void DeleteRecord(RecordTable table, ReadOnlySpan<byte> key) => _db.Remove(Concat(Prefix(table), key), writeOptions: _sync);

    /// <summary>Several record writes and deletes applied atomically with one WAL sync.</summary>
    public void WriteRecords(Action<RecordBatch> build)
    {
        var records = new RecordBatch();
        build(records);
        using var batch = new WriteBatch();
        foreach (var (table, key, value) in records.Operations)
        {
            if (value is null)
            {
                batch.Delete(Concat(Prefix(table), key));
            }
            else
            {
                batch.Put(Concat(Prefix(table), key), value);
            }
        }
        _db.Write(batch, _sync);
    }

    public bool CompareAndSwapRecord<T>(RecordTable table, byte[] key, T? expected, T? next)
        where T : class
    {
        var full = Concat(Prefix(table), key);
        lock (_casStripes[KeyLocks.Stripe(full, _casStripes.Length)])
        {
            var current = _db.Get(full);
            var matches = expected is null ? current is null : current is not null && current.AsSpan().SequenceEqual(Encode(expected));
            if (!matches)
            {
                return false;
            }
            if (next is null)
            {
                _db.Remove(full, writeOptions: _sync);
            }
            else
            {
                _db.Put(full, Encode(next), writeOptions: _sync);
            }
            return true;
        }
    }

    /// <summary>
    /// Records whose key starts with prefix, in key order, from the first key ≥ from (or after `after` when
    /// given). A fresh iterator per call: pages and prefix skips cost a seek, never a scan from the start.
    /// </summary>
    public IEnumerable<(byte[] Key, T Value)> ScanRecords<T>(RecordTable table, byte[] prefix, byte[]? from = null, byte[]? after = null)
        where T : class
    {
        var tablePrefix = Prefix(table);
        var full = Concat(tablePrefix, prefix);
        var seek = full;
        if (from is not null && from.AsSpan().SequenceCompareTo(prefix) > 0)
        {
            seek = Concat(tablePrefix, from);
        }
        if (after is not null && Concat(tablePrefix, after) is var a && a.AsSpan().SequenceCompareTo(seek) >= 0)
        {
            seek = a;
        }
        using var it = _db.NewIterator();
        it.Seek(seek);
        while (it.Valid())
        {
            var k = it.Key();
            if (!k.AsSpan().StartsWith(full))
            {
                yield break;
            }
            var userKey = k[tablePrefix.Length..];
            if (after is null || !userKey.AsSpan().SequenceEqual(after))
            {
                yield return (userKey, Decode<T>(it.Value()));
            }
            it.Next();
        }
    }
}
