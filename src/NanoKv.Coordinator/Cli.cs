using System.CommandLine;
using Microsoft.Extensions.Logging;
using NanoKv.Coordinator.Api.S3;
using NanoKv.Coordinator.Core;
using NanoKv.Core;
using NanoKv.Metadata;
using NanoKv.Volume;

namespace NanoKv.Coordinator;

/// <summary>The `coord` subcommands.</summary>
public static class Cli
{
    /// <summary>`coord serve`: run a coordinator.</summary>
    public static Command Serve()
    {
        var db = new Option<string>("--db", "--index") { Description = "Local state folder: the RocksDB index (default backend) and ops journals", Required = true };
        var meta = new Option<string?>("--meta", "--meta-dsn") { Description = "Shared metadata database instead of RocksDB: postgres://user[:password]@host:port/db[?retry_ms=10000]" };
        var replicas = new Option<int>("--replicas") { Description = "Replicas per object (N)", DefaultValueFactory = _ => 3 };
        var volumes = new Option<string?>("--volumes") { Description = "Comma-separated volume URLs known at start (volumes may also join at run time)" };
        var host = new Option<string>("--host") { Description = "Address to bind", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port to listen on", DefaultValueFactory = _ => 3000 };
        var proxy = new Option<bool>("--proxy-get") { Description = "Stream GET bodies through the coordinator instead of redirecting (also per request: ?proxy=1)" };
        var secret = SecretOption();
        var timeBox = new Option<int>("--retry-time-box-ms") { Description = "How long control calls to volumes retry transient failures", DefaultValueFactory = _ => 10_000 };
        var probe = new Option<int>("--probe-interval-ms") { Description = "Health probe interval", DefaultValueFactory = _ => 2000 };
        var suspect = new Option<int>("--suspect-after-ms") { Description = "Silence before a node is suspect (no new placements)", DefaultValueFactory = _ => 6000 };
        var down = new Option<int>("--down-after-ms") { Description = "Silence before a node is down", DefaultValueFactory = _ => 15_000 };
        var lease = new Option<int>("--pending-lease-ms") { Description = "Lease of a pending write: after it lapses (its coordinator died) any coordinator resolves the write", DefaultValueFactory = _ => 30_000 };
        var rwKeys = new Option<string?>("--access-keys-rw") { Description = $"Comma-separated API keys allowed to PUT/DELETE/GET (default: ${AccessKeys.EnvRw}); no keys = open API" };
        var roKeys = new Option<string?>("--access-keys-ro") { Description = $"Comma-separated API keys allowed to GET/HEAD only (default: ${AccessKeys.EnvRo})" };
        var (tlsCert, tlsKey) = TlsOptions();
        var verbose = new Option<bool>("--verbose") { Description = "Debug logging" };
        var s3 = new S3Cli();
        var cmd = new Command("serve", "Run the coordinator")
        {
            db, meta, replicas, volumes, host, port, proxy, secret, timeBox, probe, suspect, down, lease, rwKeys, roKeys, tlsCert, tlsKey, verbose,
        };
        foreach (var o in s3.All)
        {
            cmd.Options.Add(o);
        }
        cmd.SetAction(async (p, ct) =>
        {
            var options = new CoordinatorOptions
            {
                DbDir = p.GetValue(db)!,
                MetaDsn = p.GetValue(meta),
                Host = p.GetValue(host)!,
                Port = p.GetValue(port),
                Volumes = SplitList(p.GetValue(volumes)),
                Secret = p.GetValue(secret) ?? Environment.GetEnvironmentVariable(ClusterAuth.EnvVar),
                ReadWriteKeys = SplitList(p.GetValue(rwKeys) ?? Environment.GetEnvironmentVariable(AccessKeys.EnvRw)),
                ReadOnlyKeys = SplitList(p.GetValue(roKeys) ?? Environment.GetEnvironmentVariable(AccessKeys.EnvRo)),
                TlsCert = p.GetValue(tlsCert),
                TlsKey = p.GetValue(tlsKey),
                DataPath = new DataPathSettings
                {
                    Replicas = p.GetValue(replicas),
                    ProxyGet = p.GetValue(proxy),
                    RetryTimeBox = TimeSpan.FromMilliseconds(p.GetValue(timeBox)),
                    PendingLease = TimeSpan.FromMilliseconds(p.GetValue(lease)),
                },
                Health = new HealthSettings
                {
                    ProbeInterval = TimeSpan.FromMilliseconds(p.GetValue(probe)),
                    SuspectAfter = TimeSpan.FromMilliseconds(p.GetValue(suspect)),
                    DownAfter = TimeSpan.FromMilliseconds(p.GetValue(down)),
                },
                LogLevel = p.GetValue(verbose) ? LogLevel.Debug : LogLevel.Information,
            };
            return await Fail.Guard(async () =>
            {
                await using var server = CoordinatorServer.Create(options with { S3 = s3.ForServe(p) });
                await server.StartAsync(ct);
                Console.WriteLine($"coordinator listening on {server.Url}" + (JitMode.FullJit ? " (full JIT, ReadyToRun off)" : ""));
                if (server.S3Url is not null)
                {
                    Console.WriteLine($"S3 API listening on {server.S3Url}");
                }
                await server.WaitForShutdownAsync(ct);
                return 0;
            });
        });
        return cmd;
    }

    /// <summary>`coord dev`: coordinators (one, or several on shared metadata) and N volumes in one process, data under one folder.</summary>
    public static Command Dev()
    {
        var data = new Option<string>("--data") { Description = "Folder holding the index, the volumes and the cluster secret", DefaultValueFactory = _ => "./nanokv-data" };
        var port = new Option<int>("--port") { Description = "First coordinator's port; further coordinators, then volumes, take the next ones", DefaultValueFactory = _ => 3000 };
        var coordinators = new Option<int>("--coordinators") { Description = "Number of coordinators (more than one needs --meta postgres://…)", DefaultValueFactory = _ => 1 };
        var meta = new Option<string?>("--meta", "--meta-dsn") { Description = "Shared metadata database: postgres://user@host:port/db (default: RocksDB in DATA/index)" };
        var count = new Option<int>("--volumes") { Description = "Number of volumes", DefaultValueFactory = _ => 3 };
        var replicas = new Option<int>("--replicas") { Description = "Replicas per object", DefaultValueFactory = _ => 3 };
        var proxy = new Option<bool>("--proxy-get") { Description = "Stream GET bodies through the coordinator instead of redirecting" };
        var s3 = new S3Cli();
        var cmd = new Command("dev", "Start a local cluster (coordinators + volumes on 127.0.0.1, S3 on :9000) until Ctrl-C") { data, port, coordinators, meta, count, replicas, proxy };
        foreach (var o in s3.All)
        {
            cmd.Options.Add(o);
        }
        cmd.SetAction(async (p, ct) => await Fail.Guard(async () =>
        {
            var dir = Path.GetFullPath(p.GetValue(data)!);
            Directory.CreateDirectory(dir);
            var secretFile = Path.Combine(dir, "secret");
            if (!File.Exists(secretFile))
            {
                Durable.WriteAllBytes(secretFile, System.Text.Encoding.UTF8.GetBytes(ClusterAuth.Generate()));
            }
            var secret = File.ReadAllText(secretFile).Trim();
            var s3Options = s3.ForDev(p, dir, out var s3File, out var s3Key, out var s3Secret);
            var basePort = p.GetValue(port);
            var n = p.GetValue(count);
            var coordCount = p.GetValue(coordinators);
            var metaDsn = p.GetValue(meta);
            if (coordCount < 1 || (coordCount > 1 && string.IsNullOrWhiteSpace(metaDsn)))
            {
                throw new ArgumentException("--coordinators N > 1 needs shared metadata: --meta postgres://user@host:port/db");
            }
            var coordUrl = $"http://127.0.0.1:{basePort}";
            var vols = new List<VolumeServer>();
            try
            {
                for (var i = 1; i <= n; i++)
                {
                    var v = VolumeServer.Create(new VolumeOptions
                    {
                        DataDir = Path.Combine(dir, $"vol{i}"),
                        Port = basePort + coordCount - 1 + i,
                        CoordinatorUrl = coordUrl,
                        Secret = secret,
                        LogLevel = LogLevel.Warning,
                    });
                    await v.StartAsync(ct);
                    vols.Add(v);
                }
                // Volumes heartbeat to the first coordinator; on shared metadata the others adopt its node verdicts.
                var coords = new List<CoordinatorServer>();
                await using var stopCoords = new AsyncDisposables(coords);
                for (var c = 0; c < coordCount; c++)
                {
                    var coord = CoordinatorServer.Create(new CoordinatorOptions
                    {
                        DbDir = Path.Combine(dir, c == 0 ? "index" : $"index-{c + 1}"),
                        MetaDsn = metaDsn,
                        Port = basePort + c,
                        Volumes = vols.Select(v => v.Url).ToList(),
                        Secret = secret,
                        DataPath = new DataPathSettings { Replicas = p.GetValue(replicas), ProxyGet = p.GetValue(proxy) },
                        LogLevel = LogLevel.Warning,
                        S3 = c == 0 ? s3Options : null, // one S3 listener (its port is fixed)
                    });
                    coords.Add(coord);
                    await coord.StartAsync(ct);
                }
                Console.WriteLine($"nanokv dev cluster: data in {dir}, {(metaDsn is null ? "RocksDB" : "shared PostgreSQL")} metadata");
                foreach (var coord in coords)
                {
                    Console.WriteLine($"  coordinator  {coord.Url}");
                }
                foreach (var v in vols)
                {
                    Console.WriteLine($"  volume       {v.Url}  ({v.NodeId}, {v.Store.Root})");
                }
                Console.WriteLine($"  secret       {secretFile} (send as {ClusterAuth.Header} on /admin and /internal calls)");
                Console.WriteLine($"  S3 API       {coords[0].S3Url}  (path-style; region us-east-1)");
                Console.WriteLine($"  S3 access key {s3Key}");
                Console.WriteLine($"  S3 secret key {s3Secret}  (saved in {s3File})");
                Console.WriteLine($"try: curl -L -X PUT --data-binary @somefile {coords[0].Url}/my%2Ffile.bin");
                Console.WriteLine($"     AWS_ACCESS_KEY_ID={s3Key} AWS_SECRET_ACCESS_KEY={s3Secret} aws --endpoint-url {coords[0].S3Url} s3 mb s3://my-bucket");
                Console.WriteLine("Ctrl-C stops the cluster.");
                try
                {
                    await Task.Delay(Timeout.Infinite, ct);
                }
                catch (OperationCanceledException)
                {
                }
                Console.WriteLine("stopping…");
            }
            finally
            {
                foreach (var v in vols)
                {
                    await v.DisposeAsync();
                }
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>--tls-cert/--tls-key: PEM files; both given = serve HTTPS.</summary>
    public static (Option<string?> Cert, Option<string?> Key) TlsOptions() =>
        (new("--tls-cert") { Description = "PEM certificate file: serve HTTPS (with --tls-key)" },
         new("--tls-key") { Description = "PEM private key file for --tls-cert" });

    public static Option<string?> SecretOption() =>
        new("--secret") { Description = $"Cluster secret for /internal and /admin calls (default: ${ClusterAuth.EnvVar})" };

    public static List<string> SplitList(string? s) =>
        string.IsNullOrWhiteSpace(s) ? [] : s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
}

/// <summary>Turns expected start-up failures into one clear line and exit code 2 instead of a stack trace.</summary>
public static class Fail
{
    public static async Task<int> Guard(Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException or IOException or MetaStoreUnavailableException)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return 2;
        }
    }
}

/// <summary>Disposes servers in reverse order of creation (the last started stops first).</summary>
internal sealed class AsyncDisposables(List<CoordinatorServer> items) : IAsyncDisposable
{
    public async ValueTask DisposeAsync()
    {
        for (var i = items.Count - 1; i >= 0; i--)
        {
            await items[i].DisposeAsync();
        }
    }
}
