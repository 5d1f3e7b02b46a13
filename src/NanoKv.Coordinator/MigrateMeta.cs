using System.CommandLine;
using System.Security.Cryptography;
using NanoKv.Metadata;

namespace NanoKv.Coordinator;

/// <summary>
/// `coord migrate-meta --from rocksdb:./indexdb --to postgres://…` (or the reverse): copies every metadata
/// category, then verifies count and SHA-256 digest of each on both sides. Writes are idempotent upserts, so
/// an interrupted run is resumed by running again with --resume (keys already identical are only read).
/// Stop the coordinators first: a live writer would make the verification differ.
/// </summary>
public static class MigrateMeta
{
    private const int BatchSize = 500;

    /// <summary>Count and digest of one category on one side.</summary>
    public sealed record Tally(string Category, long Count, string Digest);

    public static Command Command()
    {
        var from = new Option<string>("--from") { Description = "Source: rocksdb:DIR or postgres://user@host:port/db", Required = true };
        var to = new Option<string>("--to") { Description = "Destination: rocksdb:DIR or postgres://user@host:port/db", Required = true };
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted migration into a non-empty destination" };
        var cmd = new Command("migrate-meta", "Copy the metadata between backends (coordinators stopped), verified by counts and digests") { from, to, resume };
        cmd.SetAction(async (p, ct) => await Fail.Guard(() =>
        {
            using var source = MetaBackends.Open(p.GetValue(from), null);
            using var destination = MetaBackends.Open(p.GetValue(to), null);
            var ok = Run(source, destination, p.GetValue(resume), Console.Out, ct);
            return Task.FromResult(ok ? 0 : 1);
        }));
        return cmd;
    }

    /// <summary>Copies and verifies; true when every category matches.</summary>
    public static bool Run(IMetaStore source, IMetaStore destination, bool resume, TextWriter log, CancellationToken ct = default)
    {
        if (!resume && !IsEmpty(destination))
        {
            throw new InvalidOperationException("the destination already holds metadata; pass --resume to continue an interrupted migration into it");
        }
        var objects = 0L;
        (byte[] Key, ObjectMeta Meta)? last = null;
        foreach (var (key, meta) in source.Scan())
        {
            ct.ThrowIfCancellationRequested();
            if (!resume || !SameBytes(destination.Get(key), meta))
            {
                destination.Put(key, meta, sync: false);
                last = (key, meta);
            }
            objects++;
        }
        if (last is { } l)
        {
            destination.Put(l.Key, l.Meta); // synced: on RocksDB this makes every unsynced put before it durable too
        }
        log.WriteLine($"objects: {objects} copied");
        foreach (var key in source.OwedDeleteKeys())
        {
            destination.MarkDeleteOwed(key);
        }
        foreach (var node in source.Nodes())
        {
            destination.PutNode(node);
        }
        CopyTable<BucketRecord>(source, destination, RecordTable.Buckets, log, ct);
        CopyTable<S3ObjectRecord>(source, destination, RecordTable.S3Objects, log, ct);
        CopyTable<MultipartRecord>(source, destination, RecordTable.Uploads, log, ct);
        CopyTable<PartRecord>(source, destination, RecordTable.Parts, log, ct);
        destination.RaiseVersionHighWater(source.VersionHighWater());
        return Verify(source, destination, log);
    }

    /// <summary>Compares count and digest of every category; prints one line per category.</summary>
    public static bool Verify(IMetaStore source, IMetaStore destination, TextWriter log)
    {
        var ok = true;
        foreach (var (a, b) in Tallies(source).Zip(Tallies(destination)))
        {
            var same = a == b;
            ok &= same;
            log.WriteLine($"{a.Category}: source {a.Count} / destination {b.Count} {(same ? "verified" : "MISMATCH")}");
        }
        var hw = (source.VersionHighWater(), destination.VersionHighWater());
        ok &= hw.Item2 >= hw.Item1;
        log.WriteLine($"version high-water: source {hw.Item1} / destination {hw.Item2}");
        return ok;
    }

    public static IEnumerable<Tally> Tallies(IMetaStore store)
    {
        yield return Digest("objects", store.Scan().Select(e => (e.Key, MetaCodec.Encode(e.Meta))));
        yield return Digest("owed deletes", store.OwedDeleteKeys().Select(k => (k, Array.Empty<byte>())));
        yield return Digest("nodes", store.Nodes().Select(n => (System.Text.Encoding.UTF8.GetBytes(n.NodeId), MetaCodec.Encode(n))));
        yield return RecordDigest<BucketRecord>(store, RecordTable.Buckets);
        yield return RecordDigest<S3ObjectRecord>(store, RecordTable.S3Objects);
        yield return RecordDigest<MultipartRecord>(store, RecordTable.Uploads);
        yield return RecordDigest<PartRecord>(store, RecordTable.Parts);
    }

    private static Tally RecordDigest<T>(IMetaStore store, RecordTable table)
        where T : class => Digest(table.ToString(), store.ScanRecords<T>(table, []).Select(e => (e.Key, MetaCodec.Encode(e.Value))));

    private static Tally Digest(string category, IEnumerable<(byte[] Key, byte[] Value)> entries)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var count = 0L;
        Span<byte> len = stackalloc byte[4];
        foreach (var (key, value) in entries)
        {
            foreach (var part in new[] { key, value })
            {
                BitConverter.TryWriteBytes(len, part.Length); // length-prefixed: no two entry lists hash alike by shifting bytes
                hash.AppendData(len);
                hash.AppendData(part);
            }
            count++;
        }
        return new Tally(category, count, Convert.ToHexString(hash.GetHashAndReset()));
    }

    private static void CopyTable<T>(IMetaStore source, IMetaStore destination, RecordTable table, TextWriter log, CancellationToken ct)
        where T : class
    {
        var count = 0L;
        foreach (var chunk in source.ScanRecords<T>(table, []).Chunk(BatchSize))
        {
            ct.ThrowIfCancellationRequested();
            destination.WriteRecords(b =>
            {
                foreach (var (key, value) in chunk)
                {
                    b.Put(table, key, value);
                }
            });
            count += chunk.Length;
        }
        log.WriteLine($"{table}: {count} copied");
    }

    private static bool IsEmpty(IMetaStore store) =>
        !store.Scan().Any() && store.OwedDeleteKeys().Count == 0 && store.Nodes().Count == 0
        && Enum.GetValues<RecordTable>().All(t => !store.ScanRecords<object>(t, []).Any());

    private static bool SameBytes(ObjectMeta? a, ObjectMeta b) => a is not null && MetaCodec.Encode(a).AsSpan().SequenceEqual(MetaCodec.Encode(b));
}
