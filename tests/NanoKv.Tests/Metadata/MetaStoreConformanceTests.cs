using System.Text;
using NanoKv.Metadata;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Metadata;

/// <summary>
/// One behavioural contract for every metadata backend: each test runs against RocksDB and a real PostgreSQL
/// (fresh database per test, one server per class).
/// </summary>
public sealed partial class MetaStoreConformanceTests(PostgresFixture pg) : IClassFixture<PostgresFixture>
{
    public static TheoryData<MetaBackendKind> Backends => MetaLocation.All;

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task PutGetRemove(MetaBackendKind kind)
    {
        using var at = await MetaLocation.CreateAsync(kind, pg);
        using var store = at.Open();
        var key = K("photos/cat.jpg");
        Assert.Null(store.Get(key));
        var meta = Meta(ObjectState.Committed, 10) with { Size = 42, Etag = "abc", Replicas = ["vol0", "vol1"] };
        store.Put(key, meta);
        var got = store.Get(key)!;
        Assert.Equal(meta.Size, got.Size);
        Assert.Equal(meta.Etag, got.Etag);
        Assert.Equal(meta.Replicas, got.Replicas);
        Assert.Equal(meta.Version, got.Version);
        store.Put(key, meta with { Size = 7, Version = 11 });
        Assert.Equal(7, store.Get(key)!.Size);
        store.Remove(key);
        Assert.Null(store.Get(key));
        store.Remove(key); // removing an absent key is fine
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task PendingIndexFollowsState(MetaBackendKind kind)
    {
        using var at = await MetaLocation.CreateAsync(kind, pg);
        using var store = at.Open();
        store.Put(K("b"), Meta(ObjectState.Pending, 1));
        store.Put(K("a"), Meta(ObjectState.Pending, 2));
        store.Put(K("c"), Meta(ObjectState.Committed, 3));
        Assert.Equal(["a", "b"], store.PendingKeys().Select(S));
        store.Put(K("a"), Meta(ObjectState.Committed, 4));
        store.Put(K("c"), Meta(ObjectState.Tombstoned, 5));
        Assert.Equal(["b"], store.PendingKeys().Select(S));
        store.Remove(K("b"));
        Assert.Empty(store.PendingKeys());
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task OwedDeletes(MetaBackendKind kind)
    {
        using var at = await MetaLocation.CreateAsync(kind, pg);
        using var store = at.Open();
        store.MarkDeleteOwed(K("y"));
        store.MarkDeleteOwed(K("x"));
        store.MarkDeleteOwed(K("x"));
        Assert.Equal(["x", "y"], store.OwedDeleteKeys().Select(S));
        store.ClearDeleteOwed(K("x"));
        store.ClearDeleteOwed(K("never"));
        Assert.Equal(["y"], store.OwedDeleteKeys().Select(S));
        Assert.Null(store.Get(K("y"))); // a separate space from object metas
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task ScansAreInByteOrderWithPrefixAndAfter(MetaBackendKind kind)
    {
        using var at = await MetaLocation.CreateAsync(kind, pg);
        using var store = at.Open();
        byte[][] keys = [[0x00], [0x61], [0x61, 0x00], [0x61, 0x2F, 0x62], [0x61, 0x62], [0x61, 0xFF], [0x61, 0xFF, 0x01], [0x62], [0x7F], [0x80], [0xC3, 0xA9], [0xFF], [0xFF, 0xFF]];
        foreach (var (k, i) in keys.Reverse().Select((k, i) => (k, i)))
        {
            store.Put(k, Meta(ObjectState.Committed, i + 1));
        }
        var sorted = keys.OrderBy(k => k, ByteOrder.Instance).Select(Hex).ToList();
        Assert.Equal(sorted, store.Scan().Select(e => Hex(e.Key)));
        Assert.Equal(sorted.Skip(4), store.Scan(keys[3]).Select(e => Hex(e.Key)));

        // Prefix "a": the key equal to the prefix is listed; 0xFF tails stay inside the prefix.
        Assert.Equal(["61", "6100", "612F62", "6162", "61FF", "61FF01"], store.Scan([0x61], null).Select(e => Hex(e.Key)));
        Assert.Equal(["6162", "61FF", "61FF01"], store.Scan([0x61], [0x61, 0x2F, 0x62]).Select(e => Hex(e.Key)));
        Assert.Equal(["61", "6100", "612F62", "6162", "61FF", "61FF01"], store.Scan([0x61], [0x61]).Select(e => Hex(e.Key))); // after == prefix: ignored
        Assert.Equal(["61", "6100", "612F62", "6162", "61FF", "61FF01"], store.Scan([0x61], [0x00]).Select(e => Hex(e.Key))); // after before prefix: ignored
        Assert.Equal(["FF", "FFFF"], store.Scan([0xFF], null).Select(e => Hex(e.Key)));
        Assert.Equal(["FFFF"], store.Scan([0xFF, 0xFF], null).Select(e => Hex(e.Key)));
        Assert.Empty(store.Scan([0x63], null));
        Assert.Equal(sorted, store.Scan([], null).Select(e => Hex(e.Key)));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task ScansPageThroughManyKeys(MetaBackendKind kind)
    {
        using var at = await MetaLocation.CreateAsync(kind, pg);
        using var store = at.Open();
        const int count = 1_150; // more than two backend pages
        await Parallel.ForAsync(0, count, new ParallelOptions { MaxDegreeOfParallelism = 8 }, (i, _) =>
        {
            store.Put(K($"k/{i:D5}"), Meta(i % 3 == 0 ? ObjectState.Pending : ObjectState.Committed, i + 1), sync: false);
            return ValueTask.CompletedTask;
        });
        var all = store.Scan([.. "k/"u8], null).Select(e => S(e.Key)).ToList();
        Assert.Equal(Enumerable.Range(0, count).Select(i => $"k/{i:D5}"), all);
        Assert.Equal(Enumerable.Range(0, count).Where(i => i % 3 == 0).Select(i => $"k/{i:D5}"), store.PendingKeys().Select(S));
        Assert.Equal(count - 601, store.Scan(K("k/00600")).Count());
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task NodesAreRememberedAndReplaced(MetaBackendKind kind)
    {
        using var at = await MetaLocation.CreateAsync(kind, pg);
        using (var store = at.Open())
        {
            store.PutNode(new NodeRecord("vol2", "http://127.0.0.1:2"));
            store.PutNode(new NodeRecord("vol1", "http://127.0.0.1:1"));
            store.PutNode(new NodeRecord("vol2", "http://127.0.0.1:22"));
        }
        using var reopened = at.Open();
        Assert.Equal([new NodeRecord("vol1", "http://127.0.0.1:1"), new NodeRecord("vol2", "http://127.0.0.1:22")], reopened.Nodes());
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task VersionHighWaterSurvivesReopenAndRemoval(MetaBackendKind kind)
    {
        using var at = await MetaLocation.CreateAsync(kind, pg);
        using (var store = at.Open())
        {
            Assert.Equal(0, store.VersionHighWater());
            store.Put(K("a"), Meta(ObjectState.Committed, 500));
            store.Put(K("b"), Meta(ObjectState.Committed, 300));
            Assert.True(store.CompareAndSwap(K("c"), null, Meta(ObjectState.Pending, 900)));
            store.Remove(K("c"));
            Assert.Equal(900, store.VersionHighWater());
        }
        using var reopened = at.Open();
        Assert.Equal(900, reopened.VersionHighWater());
        reopened.Put(K("d"), Meta(ObjectState.Committed, 1000));
        Assert.Equal(1000, reopened.VersionHighWater());
    }

    internal static byte[] K(string s) => Encoding.UTF8.GetBytes(s);

    internal static string S(byte[] b) => Encoding.UTF8.GetString(b);

    internal static string Hex(byte[] b) => Convert.ToHexString(b);

    internal static ObjectMeta Meta(ObjectState state, long version, string uploadId = "u") =>
        new() { State = state, Version = version, UploadId = uploadId, Size = version, Replicas = ["vol0"], CreatedMs = 1, UpdatedMs = 2 };

    private sealed class ByteOrder : IComparer<byte[]>
    {
        public static readonly ByteOrder Instance = new();

        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}
