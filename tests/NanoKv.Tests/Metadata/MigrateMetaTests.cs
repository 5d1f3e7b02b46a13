using NanoKv.Coordinator;
using NanoKv.Metadata;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Metadata;

/// <summary>`coord migrate-meta` RocksDB → PostgreSQL → RocksDB, verified by counts and digests.</summary>
public sealed class MigrateMetaTests(PostgresFixture pg) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task RoundTripKeepsEveryCategoryAndRefusesANonEmptyDestination()
    {
        using var rocks = await MetaLocation.CreateAsync(MetaBackendKind.RocksDb, pg);
        using var postgres = await MetaLocation.CreateAsync(MetaBackendKind.Postgres, pg);
        using var back = await MetaLocation.CreateAsync(MetaBackendKind.RocksDb, pg);
        List<MigrateMeta.Tally> original;
        using (var store = rocks.Open())
        {
            for (var i = 0; i < 700; i++)
            {
                store.Put([.. "k/"u8, (byte)(i >> 8), (byte)i], MetaStoreConformanceTests.Meta(i % 7 == 0 ? ObjectState.Pending : ObjectState.Committed, i + 1), sync: false);
            }
            store.Put("gone"u8, MetaStoreConformanceTests.Meta(ObjectState.Committed, 50_000));
            store.Remove("gone"u8); // the high-water mark outlives the key
            store.MarkDeleteOwed("k/x"u8);
            store.PutNode(new NodeRecord("vol0", "http://127.0.0.1:1"));
            store.PutRecord(RecordTable.Buckets, "b"u8, new BucketRecord("b", "AK", 1));
            store.PutRecord(RecordTable.S3Objects, "b/o"u8, new S3ObjectRecord { Etag = "e", Blobs = [new BlobRef([1, 2], 3, "x")] });
            store.PutRecord(RecordTable.Uploads, "b/u1"u8, new MultipartRecord("b", [0xFF], "u1", "AK", 1, new ObjectAttributes { UserMeta = { ["a"] = "b" } }));
            store.PutRecord(RecordTable.Parts, "u1/00001"u8, new PartRecord(1, [9], 10, "m", "b3", 2));
            original = [.. MigrateMeta.Tallies(store)];
        }
        Assert.Equal(700, original[0].Count);

        var code = await MigrateMeta.Command().Parse(["--from", rocks.Location, "--to", postgres.Location]).InvokeAsync();
        Assert.Equal(0, code);
        using (var store = postgres.Open())
        {
            Assert.Equal(original, MigrateMeta.Tallies(store));
            Assert.Equal(50_000, store.VersionHighWater());
            Assert.Equal(700 / 7, store.PendingKeys().Count);
        }

        // Again into the now non-empty database: refused without --resume, a no-op with it.
        Assert.Equal(2, await MigrateMeta.Command().Parse(["--from", rocks.Location, "--to", postgres.Location]).InvokeAsync());
        Assert.Equal(0, await MigrateMeta.Command().Parse(["--from", rocks.Location, "--to", postgres.Location, "--resume"]).InvokeAsync());

        // And back to a fresh RocksDB.
        using (var source = postgres.Open())
        using (var destination = back.Open())
        {
            Assert.True(MigrateMeta.Run(source, destination, resume: false, TextWriter.Null));
        }
        using (var store = back.Open())
        {
            Assert.Equal(original, MigrateMeta.Tallies(store));
            Assert.Equal(50_000, store.VersionHighWater());
        }
    }
}
