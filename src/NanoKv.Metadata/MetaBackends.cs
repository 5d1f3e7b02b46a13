using NanoKv.Metadata.Postgres;

namespace NanoKv.Metadata;

/// <summary>Chooses the metadata backend from a location: none or "rocksdb:DIR" = embedded RocksDB, "postgres://…" = PostgreSQL.</summary>
public static class MetaBackends
{
    /// <param name="location">null/empty = RocksDB at rocksDir; "rocksdb:DIR"; "postgres://user@host:port/db"; or an Npgsql "Host=..." string.</param>
    public static IMetaStore Open(string? location, string? rocksDir)
    {
        if (string.IsNullOrWhiteSpace(location))
        {
            return MetaStore.Open(rocksDir ?? throw new ArgumentException("no metadata location: give --db DIR or --meta postgres://..."));
        }
        if (location.StartsWith("rocksdb:", StringComparison.OrdinalIgnoreCase))
        {
            return MetaStore.Open(location["rocksdb:".Length..]);
        }
        return PostgresMetaStore.Open(location);
    }
}
