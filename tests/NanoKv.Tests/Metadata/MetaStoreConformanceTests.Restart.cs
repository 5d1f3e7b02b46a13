using NanoKv.Metadata;

namespace NanoKv.Tests.Metadata;

/// <summary>The database going away under a live store (PostgreSQL only: RocksDB is in-process).</summary>
public sealed partial class MetaStoreConformanceTests
{
    [Fact]
    public async Task PostgresRestartFailsCleanlyThenRecoversWithoutReopen()
    {
        using var at = await MetaLocation.CreateAsync(MetaBackendKind.Postgres, pg);
        using var store = at.Open(retryTimeBox: TimeSpan.FromSeconds(1));
        store.Put(K("before"), Meta(ObjectState.Committed, 1));
        Assert.NotNull(store.Get(K("before"))); // the pool now holds live connections the restart will kill

        await pg.StopAsync();
        try
        {
            var read = Assert.Throws<MetaStoreUnavailableException>(() => store.Get(K("before")));
            Assert.Contains("unavailable", read.Message, StringComparison.Ordinal);
            Assert.Throws<MetaStoreUnavailableException>(() => store.Put(K("during"), Meta(ObjectState.Committed, 2)));
            Assert.Throws<MetaStoreUnavailableException>(() => store.CompareAndSwap(K("during"), null, Meta(ObjectState.Pending, 3)));
            Assert.Throws<MetaStoreUnavailableException>(() => store.Scan().ToList());
        }
        finally
        {
            await pg.StartAsync();
        }

        // Same store object: the pool drops dead connections and the next operations work.
        Assert.Equal(1, store.Get(K("before"))!.Version);
        Assert.True(store.CompareAndSwap(K("after"), null, Meta(ObjectState.Pending, 4)));
        Assert.Equal(["after"], store.PendingKeys().Select(S));
        Assert.Equal(["after", "before"], store.Scan().Select(e => S(e.Key)));
    }
}
