using NanoKv.Metadata;

namespace NanoKv.Tests.Metadata;

/// <summary>Record tables, batches and compare-and-swap, against every backend.</summary>
public sealed partial class MetaStoreConformanceTests
{
    [Theory]
    [MemberData(nameof(Backends))]
    public async Task RecordTablesAreSeparateAndScanInOrder(MetaBackendKind kind)
    {
        using var at = await MetaLocation.CreateAsync(kind, pg);
        using var store = at.Open();
        store.PutRecord(RecordTable.Buckets, K("photos"), new BucketRecord("photos", "AK1", 5));
        store.PutRecord(RecordTable.S3Objects, K("photos"), new S3ObjectRecord { Etag = "e", Size = 1 });
        Assert.Equal("AK1", store.GetRecord<BucketRecord>(RecordTable.Buckets, K("photos"))!.Owner);
        Assert.Equal("e", store.GetRecord<S3ObjectRecord>(RecordTable.S3Objects, K("photos"))!.Etag);
        Assert.Null(store.GetRecord<BucketRecord>(RecordTable.Uploads, K("photos")));
        Assert.Null(store.Get(K("photos")));

        foreach (var k in new[] { "b/z", "b/a", "b/m/1", "b/m/2", "c/a", "a/z" })
        {
            store.PutRecord(RecordTable.Parts, K(k), new PartRecord(1, K(k), 1, "m", "b3", 0));
        }
        string[] ScanKeys(string prefix, string? from = null, string? after = null) =>
            [.. store.ScanRecords<PartRecord>(RecordTable.Parts, K(prefix), from is null ? null : K(from), after is null ? null : K(after)).Select(e => S(e.Key))];
        Assert.Equal(["b/a", "b/m/1", "b/m/2", "b/z"], ScanKeys("b/"));
        Assert.Equal(["b/m/1", "b/m/2", "b/z"], ScanKeys("b/", from: "b/b"));
        Assert.Equal(["b/m/2", "b/z"], ScanKeys("b/", after: "b/m/1"));
        Assert.Equal(["b/m/2", "b/z"], ScanKeys("b/", from: "b/m/1", after: "b/m/1"));
        Assert.Equal(["b/z"], ScanKeys("b/", from: "b/n", after: "b/m/1")); // the later of the two bounds wins
        Assert.Equal(["b/a", "b/m/1", "b/m/2", "b/z"], ScanKeys("b/", from: "a"));
        Assert.Equal(["a/z", "b/a", "b/m/1", "b/m/2", "b/z", "c/a"], ScanKeys(""));
        store.DeleteRecord(RecordTable.Parts, K("b/m/1"));
        Assert.Equal(["b/m/2"], ScanKeys("b/m/"));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task WriteRecordsIsAllOrNothing(MetaBackendKind kind)
    {
        using var at = await MetaLocation.CreateAsync(kind, pg);
        using var store = at.Open();
        store.PutRecord(RecordTable.Uploads, K("u1"), new BucketRecord("old", "", 0));
        store.WriteRecords(b =>
        {
            b.Put(RecordTable.S3Objects, K("x"), new S3ObjectRecord { Etag = "new" });
            b.Delete(RecordTable.Uploads, K("u1"));
            b.Put(RecordTable.Buckets, K("b"), new BucketRecord("b", "o", 1));
        });
        Assert.Equal("new", store.GetRecord<S3ObjectRecord>(RecordTable.S3Objects, K("x"))!.Etag);
        Assert.Null(store.GetRecord<BucketRecord>(RecordTable.Uploads, K("u1")));
        Assert.NotNull(store.GetRecord<BucketRecord>(RecordTable.Buckets, K("b")));

        Assert.Throws<InvalidOperationException>(() => store.WriteRecords(b =>
        {
            b.Put(RecordTable.S3Objects, K("x"), new S3ObjectRecord { Etag = "half" });
            throw new InvalidOperationException("builder failed");
        }));
        Assert.Equal("new", store.GetRecord<S3ObjectRecord>(RecordTable.S3Objects, K("x"))!.Etag);

        // A large batch lands whole (one transaction / one write batch).
        store.WriteRecords(b =>
        {
            for (var i = 0; i < 1_100; i++)
            {
                b.Put(RecordTable.Parts, K($"p/{i:D4}"), new PartRecord(i, [], i, "", "", 0));
            }
        });
        Assert.Equal(1_100, store.ScanRecords<PartRecord>(RecordTable.Parts, K("p/")).Count());
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task CompareAndSwapSemantics(MetaBackendKind kind)
    {
        using var at = await MetaLocation.CreateAsync(kind, pg);
        using var store = at.Open();
        var key = K("cas");
        var pending = Meta(ObjectState.Pending, 10, "up1");
        Assert.True(store.CompareAndSwap(key, null, null)); // absent and expected absent: nothing to do, holds
        Assert.True(store.CompareAndSwap(key, null, pending));
        Assert.False(store.CompareAndSwap(key, null, pending)); // must be absent: it is not
        Assert.False(store.CompareAndSwap(key, null, null));
        Assert.Equal(["cas"], store.PendingKeys().Select(S));

        var committed = pending with { State = ObjectState.Committed, Size = 99 };
        Assert.False(store.CompareAndSwap(key, pending with { Version = 11 }, committed)); // other version
        Assert.False(store.CompareAndSwap(key, pending with { UploadId = "up2" }, committed)); // other upload
        Assert.False(store.CompareAndSwap(key, pending with { State = ObjectState.Committed }, committed)); // other state
        Assert.True(store.CompareAndSwap(key, pending with { Size = 12345 }, committed)); // other fields do not matter
        Assert.Equal(99, store.Get(key)!.Size);
        Assert.Empty(store.PendingKeys());

        Assert.False(await store.UpdateIfUnchangedAsync(key, pending, null));
        Assert.True(await store.UpdateIfUnchangedAsync(key, committed, committed with { Replicas = ["vol9"] }));
        Assert.Equal(["vol9"], store.Get(key)!.Replicas);
        Assert.True(store.CompareAndSwap(key, committed, null)); // next null deletes
        Assert.Null(store.Get(key));
        Assert.False(store.CompareAndSwap(key, committed, null));
        Assert.False(await store.UpdateIfUnchangedAsync(key, committed, committed));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task CompareAndSwapRecordComparesEncodedBytes(MetaBackendKind kind)
    {
        using var at = await MetaLocation.CreateAsync(kind, pg);
        using var store = at.Open();
        var key = K("bucket");
        var v1 = new BucketRecord("bucket", "AK1", 1);
        var v2 = v1 with { Owner = "AK2" };
        Assert.True(store.CompareAndSwapRecord<BucketRecord>(RecordTable.Buckets, key, null, v1));
        Assert.False(store.CompareAndSwapRecord<BucketRecord>(RecordTable.Buckets, key, null, v2));
        Assert.False(store.CompareAndSwapRecord(RecordTable.Buckets, key, v1 with { CreatedMs = 2 }, v2));
        Assert.True(store.CompareAndSwapRecord(RecordTable.Buckets, key, v1, v2));
        Assert.Equal("AK2", store.GetRecord<BucketRecord>(RecordTable.Buckets, key)!.Owner);
        Assert.False(store.CompareAndSwapRecord<BucketRecord>(RecordTable.Buckets, key, v1, null));
        Assert.True(store.CompareAndSwapRecord<BucketRecord>(RecordTable.Buckets, key, v2, null));
        Assert.Null(store.GetRecord<BucketRecord>(RecordTable.Buckets, key));
        Assert.True(store.CompareAndSwapRecord<BucketRecord>(RecordTable.Buckets, key, null, null));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task ConcurrentCompareAndSwapHasExactlyOneWinner(MetaBackendKind kind)
    {
        using var at = await MetaLocation.CreateAsync(kind, pg);
        using var store = at.Open();
        const int contenders = 24;
        var key = K("contended");

        // Round 1: everyone creates the absent key.
        var created = await Race(i => store.CompareAndSwap(key, null, Meta(ObjectState.Pending, 100 + i, $"up{i}")));
        var winner = Assert.Single(created);
        Assert.Equal($"up{winner}", store.Get(key)!.UploadId);

        // Round 2: everyone commits from the state they all saw.
        var seen = store.Get(key)!;
        var committed = await Race(i => store.CompareAndSwap(key, seen, seen with { State = ObjectState.Committed, Size = i }));
        Assert.Equal(store.Get(key)!.Size, Assert.Single(committed));

        // Records: one bucket owner.
        var owners = await Race(i => store.CompareAndSwapRecord<BucketRecord>(RecordTable.Buckets, K("b"), null, new BucketRecord("b", $"AK{i}", i)));
        Assert.Equal($"AK{Assert.Single(owners)}", store.GetRecord<BucketRecord>(RecordTable.Buckets, K("b"))!.Owner);

        static async Task<List<int>> Race(Func<int, bool> attempt)
        {
            using var start = new ManualResetEventSlim(false);
            var tasks = Enumerable.Range(0, contenders)
                .Select(i => Task.Factory.StartNew(() => start.Wait(TimeSpan.FromSeconds(30)) && attempt(i), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))
                .ToList();
            start.Set();
            var results = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
            return [.. results.Select((won, i) => (won, i)).Where(r => r.won).Select(r => r.i)];
        }
    }
}
