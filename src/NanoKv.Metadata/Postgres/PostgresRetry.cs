using System.Diagnostics;
using Npgsql;

namespace NanoKv.Metadata.Postgres;

/// <summary>
/// Runs one database operation on a pooled connection, retrying serialization failures, deadlocks and
/// connection errors with backoff inside a time box; past it, <see cref="MetaStoreUnavailableException"/>.
/// </summary>
internal sealed class PostgresRetry(NpgsqlDataSource source, TimeSpan timeBox)
{
    /// <summary>Runs op(connection, attempt); attempt &gt; 0 means an earlier try failed transiently (it may have committed).</summary>
    public T Run<T>(string what, Func<NpgsqlConnection, int, T> op)
    {
        var clock = Stopwatch.StartNew();
        var delay = TimeSpan.FromMilliseconds(20);
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                using var conn = source.OpenConnection();
                return op(conn, attempt);
            }
            catch (Exception ex) when (IsTransient(ex))
            {
                if (IsConnectionLoss(ex))
                {
                    source.Clear(); // idle pooled connections died with the server: do not hand them out again
                }
                if (clock.Elapsed + delay > timeBox)
                {
                    throw new MetaStoreUnavailableException(
                        $"metadata database unavailable ({what}) after {attempt + 1} attempts in {clock.Elapsed.TotalSeconds:0.0}s: {ex.Message}", ex);
                }
                Thread.Sleep(delay); // the interface is synchronous (see docs/decisions.md)
                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 500));
            }
        }
    }

    public static bool IsTransient(Exception ex) => ex switch
    {
        PostgresException pg => pg.SqlState is "40001" or "40P01" or "57P01" or "57P02" or "57P03" or "53300" or "55P03"
            || pg.SqlState.StartsWith("08", StringComparison.Ordinal) || pg.IsTransient,
        NpgsqlException npg => npg.IsTransient || npg.InnerException is IOException or System.Net.Sockets.SocketException or TimeoutException,
        _ => false,
    };

    private static bool IsConnectionLoss(Exception ex) => ex is PostgresException pg
        ? pg.SqlState is "57P01" or "57P02" or "57P03" || pg.SqlState.StartsWith("08", StringComparison.Ordinal)
        : true;
}
