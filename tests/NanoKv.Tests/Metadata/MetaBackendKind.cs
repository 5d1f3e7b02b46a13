using NanoKv.Metadata;
using NanoKv.Metadata.Postgres;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Metadata;

/// <summary>The metadata backends a test runs against (a Theory parameter).</summary>
public enum MetaBackendKind
{
    RocksDb,
    Postgres,
}

/// <summary>One backend location for a test: opened (and reopened) as often as the test likes; removed on dispose.</summary>
public sealed class MetaLocation : IDisposable
{
    private readonly string? _dir;

    private MetaLocation(MetaBackendKind kind, string location, string? dir)
    {
        Kind = kind;
        Location = location;
        _dir = dir;
    }

    public MetaBackendKind Kind { get; }

    /// <summary>"rocksdb:DIR" or "postgres://…", as `coord serve --meta` takes it.</summary>
    public string Location { get; }

    public static TheoryData<MetaBackendKind> All => [MetaBackendKind.RocksDb, MetaBackendKind.Postgres];

    public static async Task<MetaLocation> CreateAsync(MetaBackendKind kind, PostgresFixture pg)
    {
        if (kind == MetaBackendKind.Postgres)
        {
            return new MetaLocation(kind, await pg.CreateDatabaseAsync(), null);
        }
        var dir = TempDir.Create("meta");
        return new MetaLocation(kind, "rocksdb:" + Path.Combine(dir, "index"), dir);
    }

    public IMetaStore Open(TimeSpan? retryTimeBox = null) =>
        Kind == MetaBackendKind.Postgres ? PostgresMetaStore.Open(Location, retryTimeBox) : MetaBackends.Open(Location, null);

    public void Dispose()
    {
        if (_dir is not null)
        {
            TempDir.Delete(_dir);
        }
    }
}
