using System.Diagnostics;
using NanoKv.Tests.Metadata;
using Npgsql;

namespace NanoKv.Tests.Infrastructure;

/// <summary>
/// A real PostgreSQL server (Debian's postgresql package) in a temp folder on a free 127.0.0.1 port, shared by
/// one test class (IClassFixture); each test takes a fresh database. PostgreSQL refuses to run as root, so as
/// root the folder is handed to the `postgres` user and initdb/pg_ctl run through runuser. Stopped and removed
/// on dispose.
/// </summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    public const string BinDir = "/usr/lib/postgresql/15/bin";
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(60);
    private int _databases;

    public string Root { get; private set; } = "";

    public int Port { get; private set; }

    private string DataDir => Path.Combine(Root, "data");

    public async Task InitializeAsync()
    {
        if (!File.Exists(Path.Combine(BinDir, "initdb")))
        {
            throw new InvalidOperationException($"PostgreSQL is not installed ({BinDir}/initdb missing): apt-get install postgresql (.ci/run does)");
        }
        Root = TempDir.Create("pg");
        Port = TestCluster.FreePort();
        if (IsRoot)
        {
            await RunAsync("chown", ["postgres:postgres", Root], asPostgres: false);
        }
        await RunAsync(Path.Combine(BinDir, "initdb"), ["-D", DataDir, "-A", "trust", "-U", "postgres", "--no-sync"], asPostgres: true);
        await StartAsync();
    }

    /// <summary>A new empty database; returns its DSN (postgres://postgres@127.0.0.1:PORT/db).</summary>
    public async Task<string> CreateDatabaseAsync()
    {
        var name = $"t{Interlocked.Increment(ref _databases)}_{Guid.NewGuid():N}"[..20];
        await using (var conn = new NpgsqlConnection($"Host=127.0.0.1;Port={Port};Username=postgres;Database=postgres;Timeout=10"))
        {
            await conn.OpenAsync();
            await using var cmd = new NpgsqlCommand($"CREATE DATABASE {name}", conn);
            await cmd.ExecuteNonQueryAsync();
        }
        return $"postgres://postgres@127.0.0.1:{Port}/{name}";
    }

    /// <summary>The `meta:` argument of a cluster on the given backend: null = RocksDB (the default), else a fresh database.</summary>
    public async Task<string?> MetaAsync(MetaBackendKind kind) => kind == MetaBackendKind.Postgres ? await CreateDatabaseAsync() : null;

    /// <summary>Starts the server (again) on the same folder and port; returns when it accepts connections.</summary>
    public Task StartAsync() => RunAsync(
        Path.Combine(BinDir, "pg_ctl"),
        ["-D", DataDir, "-l", Path.Combine(Root, "server.log"), "-w", "-t", "60", "-o", $"-p {Port} -k {Root} -c listen_addresses=127.0.0.1 -c max_connections=300", "start"],
        asPostgres: true);

    /// <summary>Stops the server (fast: open connections are terminated), returns when it is down.</summary>
    public Task StopAsync() => RunAsync(Path.Combine(BinDir, "pg_ctl"), ["-D", DataDir, "-w", "-t", "60", "-m", "fast", "stop"], asPostgres: true);

    public async Task DisposeAsync()
    {
        if (Root.Length == 0)
        {
            return;
        }
        try
        {
            if (File.Exists(Path.Combine(DataDir, "postmaster.pid")))
            {
                await RunAsync(Path.Combine(BinDir, "pg_ctl"), ["-D", DataDir, "-w", "-t", "60", "-m", "immediate", "stop"], asPostgres: true);
            }
        }
        finally
        {
            TempDir.Delete(Root);
        }
    }

    private static bool IsRoot => Environment.UserName == "root";

    private static async Task RunAsync(string file, string[] args, bool asPostgres)
    {
        var psi = new ProcessStartInfo(asPostgres && IsRoot ? "runuser" : file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (asPostgres && IsRoot)
        {
            foreach (var a in (string[])["-u", "postgres", "--", file])
            {
                psi.ArgumentList.Add(a);
            }
        }
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(CommandTimeout);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in {CommandTimeout}");
        }
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {p.ExitCode}: {await stdout} {await stderr}");
        }
    }
}
