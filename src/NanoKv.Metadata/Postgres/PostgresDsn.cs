using Npgsql;

namespace NanoKv.Metadata.Postgres;

/// <summary>
/// Turns `postgres://user:password@host:port/database?sslmode=require&amp;retry_ms=10000` (or an Npgsql
/// "Host=...;Database=..." string) into an Npgsql connection string plus nanokv's own settings.
/// </summary>
public static class PostgresDsn
{
    public static bool IsPostgres(string dsn) =>
        dsn.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) || dsn.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase);

    public static (string ConnectionString, TimeSpan RetryTimeBox) Parse(string dsn)
    {
        var retry = TimeSpan.FromSeconds(10);
        NpgsqlConnectionStringBuilder b;
        if (IsPostgres(dsn))
        {
            var uri = new Uri(dsn);
            b = new NpgsqlConnectionStringBuilder { Host = uri.Host, Port = uri.IsDefaultPort || uri.Port <= 0 ? 5432 : uri.Port };
            var user = uri.UserInfo.Split(':', 2);
            if (user[0].Length > 0)
            {
                b.Username = Uri.UnescapeDataString(user[0]);
            }
            if (user.Length > 1)
            {
                b.Password = Uri.UnescapeDataString(user[1]);
            }
            var db = Uri.UnescapeDataString(uri.AbsolutePath.Trim('/'));
            if (db.Length > 0)
            {
                b.Database = db;
            }
            foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
            {
                var kv = pair.Split('=', 2);
                var name = Uri.UnescapeDataString(kv[0]);
                var value = kv.Length > 1 ? Uri.UnescapeDataString(kv[1]) : "";
                switch (name.ToLowerInvariant())
                {
                    case "retry_ms":
                        retry = TimeSpan.FromMilliseconds(int.Parse(value, System.Globalization.CultureInfo.InvariantCulture));
                        break;
                    case "sslmode":
                        b.SslMode = Enum.Parse<SslMode>(value.Replace("-", "", StringComparison.Ordinal), ignoreCase: true);
                        break;
                    case "connect_timeout":
                        b.Timeout = int.Parse(value, System.Globalization.CultureInfo.InvariantCulture);
                        break;
                    case "application_name":
                        b.ApplicationName = value;
                        break;
                    default:
                        b[name] = value; // Npgsql keywords pass through; unknown ones throw with a clear message
                        break;
                }
            }
        }
        else
        {
            b = new NpgsqlConnectionStringBuilder(dsn);
        }
        b.ApplicationName ??= "nanokv-coordinator";
        if (!dsn.Contains("timeout", StringComparison.OrdinalIgnoreCase))
        {
            b.Timeout = 5; // connect: fail over to a retry (then 503) quickly when the database is gone
        }
        return (b.ConnectionString, retry);
    }
}
