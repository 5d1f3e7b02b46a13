using Npgsql;

namespace NanoKv.Metadata.Postgres;

/// <summary>
/// The schema, created or migrated at open. Each version is a list of idempotent statements (IF NOT EXISTS /
/// ON CONFLICT DO NOTHING), so several coordinators starting at once converge; nanokv_schema records the version.
/// </summary>
internal static class PostgresSchema
{
    /// <summary>Space ids of nanokv_records beside the RecordTable values (0..4).</summary>
    public const short NodesSpace = 100;

    public const short OwedDeletesSpace = 101;

    private static readonly string[][] Migrations =
    [
        // 1: object metas with typed compare-and-swap columns; generic byte-keyed records; counters.
        [
            "CREATE TABLE IF NOT EXISTS nanokv_objects (k BYTEA PRIMARY KEY, state SMALLINT NOT NULL, upload_id TEXT NOT NULL, ver BIGINT NOT NULL, meta BYTEA NOT NULL)",
            "CREATE INDEX IF NOT EXISTS nanokv_objects_by_state ON nanokv_objects (state, k)",
            "CREATE TABLE IF NOT EXISTS nanokv_records (space SMALLINT NOT NULL, k BYTEA NOT NULL, v BYTEA NOT NULL, PRIMARY KEY (space, k))",
            "CREATE TABLE IF NOT EXISTS nanokv_counters (name TEXT PRIMARY KEY, v BIGINT NOT NULL)",
            "INSERT INTO nanokv_counters (name, v) VALUES ('version', 0) ON CONFLICT (name) DO NOTHING",
        ],

        // 2: the pending write's lease (ObjectMeta.LeaseUntilMs), compared by compare-and-swap like state/upload/version.
        [
            "ALTER TABLE nanokv_objects ADD COLUMN IF NOT EXISTS lease BIGINT NOT NULL DEFAULT 0",
        ],
    ];

    public static int Latest => Migrations.Length;

    public static void Migrate(PostgresRetry retry)
    {
        retry.Run("migrate schema", (conn, _) =>
        {
            try
            {
                Exec(conn, "CREATE TABLE IF NOT EXISTS nanokv_schema (id INT PRIMARY KEY, version INT NOT NULL)");
                var current = CurrentVersion(conn);
                if (current > Latest)
                {
                    throw new InvalidOperationException($"the metadata schema is version {current}, newer than this nanokv build knows ({Latest}); upgrade nanokv");
                }
                for (var v = current + 1; v <= Latest; v++)
                {
                    foreach (var sql in Migrations[v - 1])
                    {
                        Exec(conn, sql);
                    }
                    using var cmd = new NpgsqlCommand("INSERT INTO nanokv_schema (id, version) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET version = GREATEST(nanokv_schema.version, excluded.version)", conn);
                    cmd.Parameters.Add(new NpgsqlParameter { Value = v });
                    cmd.ExecuteNonQuery();
                }
                return 0;
            }
            catch (PostgresException ex) when (ex.SqlState is "23505" or "42P07")
            {
                // Another coordinator created the same object concurrently (CREATE ... IF NOT EXISTS races): retry.
                throw new NpgsqlException("concurrent schema creation", new TimeoutException(ex.Message));
            }
        });
    }

    public static int CurrentVersion(NpgsqlConnection conn)
    {
        using var cmd = new NpgsqlCommand("SELECT version FROM nanokv_schema WHERE id = 1", conn);
        return cmd.ExecuteScalar() is int v ? v : 0;
    }

    private static void Exec(NpgsqlConnection conn, string sql)
    {
        using var cmd = new NpgsqlCommand(sql, conn);
        cmd.ExecuteNonQuery();
    }
}
