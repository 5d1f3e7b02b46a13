using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using NanoKv.Core;
using NanoKv.Ops;

namespace NanoKv.Tests.Infrastructure;

/// <summary>
/// A coordinator and N volumes as real child processes (with a cluster secret), for fault tests that
/// kill -9, SIGSTOP or restart them. Everything is killed and the folder removed on dispose.
/// </summary>
public sealed class ProcessCluster : IAsyncDisposable
{
    // The health timing every process scenario runs with; waits and bounds in tests derive from these.
    public static readonly TimeSpan ProbeInterval = TimeSpan.FromMilliseconds(200);
    public static readonly TimeSpan SuspectAfter = TimeSpan.FromMilliseconds(1000);
    public static readonly TimeSpan DownAfter = TimeSpan.FromMilliseconds(2000);
    public static readonly TimeSpan RetryTimeBox = TimeSpan.FromMilliseconds(3000);

    /// <summary>The coordinator's per-attempt timeout for volume calls (its default; not overridden here).</summary>
    public static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(3);

    public static readonly TimeSpan Heartbeat = TimeSpan.FromMilliseconds(200);

    /// <summary>How long a node state change takes to be seen: silence past DownAfter plus a probe round and its timeout (2 s).</summary>
    public static TimeSpan StatusChangeBound => DownAfter + ProbeInterval + TimeSpan.FromSeconds(2) + Slack;

    /// <summary>Scheduling slack on a loaded 2-core CI machine (process start, GC, JIT).</summary>
    public static readonly TimeSpan Slack = TimeSpan.FromSeconds(10);

    private readonly int _replicas;
    private readonly int[] _volumePorts;
    private readonly int _coordPort;
    private readonly int _coordPortB = TestCluster.FreePort();
    private string? _meta;
    private TimeSpan? _pendingLease;
    private readonly int _s3Port = TestCluster.FreePort();

    private ProcessCluster(int volumes, int replicas)
    {
        Root = TempDir.Create("proc");
        _replicas = replicas;
        _volumePorts = Enumerable.Range(0, volumes).Select(_ => TestCluster.FreePort()).ToArray();
        _coordPort = TestCluster.FreePort();
        Volumes = new ChildProcess?[volumes];
        Client = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
        Admin = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
        Admin.DefaultRequestHeaders.Add(ClusterAuth.Header, Secret);
    }

    public string Root { get; }

    public string Secret { get; } = ClusterAuth.Generate();

    public ChildProcess?[] Volumes { get; }

    public ChildProcess? Coordinator { get; private set; }

    /// <summary>A second coordinator on the same shared metadata (<see cref="StartCoordinatorBAsync"/>).</summary>
    public ChildProcess? CoordinatorB { get; private set; }

    public string UrlB => $"http://127.0.0.1:{_coordPortB}";

    public int Replicas => _replicas;

    public string Url => $"http://127.0.0.1:{_coordPort}";

    /// <summary>The coordinator's S3 listener, with <see cref="S3AccessKey"/>/<see cref="S3SecretKey"/> as its one user.</summary>
    public string S3Url => $"http://127.0.0.1:{_s3Port}";

    public const string S3AccessKey = "testkey";

    public const string S3SecretKey = "testsecret0123456789";

    /// <summary>Public client, follows redirects.</summary>
    public HttpClient Client { get; }

    /// <summary>Carries the cluster secret.</summary>
    public HttpClient Admin { get; }

    public string VolumeUrl(int i) => $"http://127.0.0.1:{_volumePorts[i]}";

    public string VolumeDir(int i) => Path.Combine(Root, $"vol{i}");

    public string IndexDir => Path.Combine(Root, "index");

    /// <summary>Starts the volumes, then the coordinator; waitAlive=false returns as soon as the coordinator answers /healthz.</summary>
    /// <param name="hooks">per process ("vol0", "coord"): environment and wrapper (strace, faketime) to start it with</param>
    /// <param name="meta">shared metadata (`--meta postgres://…`) instead of the RocksDB index</param>
    /// <param name="pendingLease">`--pending-lease-ms` of every coordinator</param>
    public static async Task<ProcessCluster> StartAsync(int volumes = 3, int replicas = 2, bool waitAlive = true, Func<string, ProcessHook?>? hooks = null, string? meta = null, TimeSpan? pendingLease = null)
    {
        var c = new ProcessCluster(volumes, replicas) { _meta = meta, _pendingLease = pendingLease };
        try
        {
            for (var i = 0; i < volumes; i++)
            {
                var hook = hooks?.Invoke($"vol{i}");
                await c.StartVolumeAsync(i, hook?.Env, hook?.Wrapper);
            }
            var coordHook = hooks?.Invoke("coord");
            await c.StartCoordinatorAsync(coordHook?.Env, coordHook?.Wrapper);
            if (waitAlive)
            {
                await c.WaitAllAliveAsync();
            }
            return c;
        }
        catch
        {
            await c.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts volume i; env (e.g. NANOKV_CRASH_AT) and a wrapper (strace) are test hooks.</summary>
    public async Task StartVolumeAsync(int i, IDictionary<string, string>? env = null, IReadOnlyList<string>? wrapper = null)
    {
        Volumes[i] = await ChildProcess.StartAsync("volume", _volumePorts[i],
        [
            "--data", VolumeDir(i), "--port", $"{_volumePorts[i]}", "--node-id", $"vol{i}", "--coordinator", Url,
            "--secret", Secret, "--heartbeat-ms", $"{Heartbeat.TotalMilliseconds}", "--enable-fault-injection",
        ], env, wrapper);
    }

    public async Task StartCoordinatorAsync(IDictionary<string, string>? env = null, IReadOnlyList<string>? wrapper = null)
    {
        Coordinator = await ChildProcess.StartAsync("coord", _coordPort,
        [
            .. CoordinatorArgs(IndexDir, _coordPort), "--s3-port", $"{_s3Port}", "--s3-users", $"{S3AccessKey}:{S3SecretKey}",
        ], env, wrapper);
    }

    /// <summary>Starts a second coordinator (own port and state folder, no S3) on the cluster's shared metadata.</summary>
    public async Task StartCoordinatorBAsync(IDictionary<string, string>? env = null)
    {
        if (_meta is null)
        {
            throw new InvalidOperationException("a second coordinator needs shared metadata: StartAsync(meta: postgres://…)");
        }
        CoordinatorB = await ChildProcess.StartAsync("coord", _coordPortB, CoordinatorArgs(Path.Combine(Root, "index-b"), _coordPortB), env);
    }

    private List<string> CoordinatorArgs(string db, int port)
    {
        List<string> args =
        [
            "serve", "--db", db, "--port", $"{port}", "--replicas", $"{_replicas}",
            "--volumes", string.Join(',', _volumePorts.Select((_, i) => VolumeUrl(i))), "--secret", Secret,
            "--probe-interval-ms", $"{ProbeInterval.TotalMilliseconds}", "--suspect-after-ms", $"{SuspectAfter.TotalMilliseconds}",
            "--down-after-ms", $"{DownAfter.TotalMilliseconds}", "--retry-time-box-ms", $"{RetryTimeBox.TotalMilliseconds}",
        ];
        if (_meta is not null)
        {
            args.AddRange(["--meta", _meta]);
        }
        if (_pendingLease is { } lease)
        {
            args.AddRange(["--pending-lease-ms", $"{lease.TotalMilliseconds}"]);
        }
        return args;
    }

    public void KillVolume(int i) => Volumes[i]?.Kill();

    public void KillCoordinator() => Coordinator?.Kill();

    /// <summary>SIGSTOP / SIGCONT: the process keeps its sockets but stops answering, like a hung disk or a GC pause.</summary>
    public static void Signal(ChildProcess p, string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", $"{p.Pid}"]);
        kill.WaitForExit();
    }

    /// <summary>The process state letter from /proc (T = stopped): proof a SIGSTOP took effect.</summary>
    public static char ProcState(ChildProcess p)
    {
        var stat = File.ReadAllText($"/proc/{p.Pid}/stat");
        return stat[stat.LastIndexOf(')') + 2];
    }

    public async Task<string> StatusOfAsync(int i, string? coordinatorUrl = null)
    {
        var nodes = await Admin.GetFromJsonAsync<JsonElement>($"{coordinatorUrl ?? Url}/admin/nodes");
        return nodes.EnumerateArray().First(n => n.GetProperty("node_id").GetString() == $"vol{i}").GetProperty("status").GetString()!;
    }

    public Task WaitAllAliveAsync(string? coordinatorUrl = null) => TestCluster.WaitUntilAsync(
        async () =>
        {
            for (var i = 0; i < Volumes.Length; i++)
            {
                if (await StatusOfAsync(i, coordinatorUrl) != "alive")
                {
                    return false;
                }
            }
            return true;
        },
        StatusChangeBound,
        "every volume alive");

    public async Task ArmAsync(int volume, string op, string mode, int count = 1, int status = 503, int stallMs = 30_000)
    {
        using var resp = await Admin.PostAsJsonAsync($"{VolumeUrl(volume)}/admin/faults", new { op, mode, count, status, stall_ms = stallMs });
        resp.EnsureSuccessStatusCode();
    }

    /// <summary>How many times volume's fault for op fired (GET /admin/faults).</summary>
    public async Task<int> FaultHitsAsync(int volume, string op)
    {
        var report = await Admin.GetFromJsonAsync<JsonElement>($"{VolumeUrl(volume)}/admin/faults");
        return report.GetProperty("hits").TryGetProperty(op, out var n) ? n.GetInt32() : 0;
    }

    /// <summary>Clears volume's faults and returns how many times op's fault had fired.</summary>
    public async Task<int> ClearFaultsAsync(int volume, string op)
    {
        using var resp = await Admin.DeleteAsync($"{VolumeUrl(volume)}/admin/faults");
        resp.EnsureSuccessStatusCode();
        var report = await resp.Content.ReadFromJsonAsync<JsonElement>();
        return report.GetProperty("hits").TryGetProperty(op, out var n) ? n.GetInt32() : 0;
    }

    public Task<Report> OpsAsync(string command, bool deep = false) =>
        OpsCli.RunLiveAsync(Url, new OpsOptions { Command = command, Deep = deep }, Secret, quiet: true, CancellationToken.None);

    /// <summary>Upload files left in a volume's tmp/ (the *.committed markers that keep commit idempotent excluded).</summary>
    public IEnumerable<string> TmpLeftovers(int i) => Directory.GetFiles(Path.Combine(VolumeDir(i), "tmp"))
        .Where(f => !f.EndsWith(".committed", StringComparison.Ordinal)).Select(f => $"vol{i}:{Path.GetFileName(f)}");

    /// <summary>
    /// The end state every fault scenario must reach, checked before anything heals it: nothing pending or owed;
    /// leftover temp files counted before any sweep (at most <paramref name="explainedTmp"/>, which the scenario
    /// explains); acknowledged PUTs readable with their bytes and acknowledged DELETEs gone; `verify --deep`
    /// finds 0 corrupted and 0 under-replicated keys except exactly the <paramref name="damaged"/> ones. Only then
    /// repair, verify again (clean), sweep, and tmp/ must be empty.
    /// </summary>
    public async Task AssertConvergedAsync(IReadOnlyDictionary<string, byte[]> acked, IEnumerable<string> deleted, IReadOnlyCollection<string>? damaged = null, int explainedTmp = 0)
    {
        await TestCluster.WaitUntilAsync(
            async () => (await Admin.GetFromJsonAsync<JsonElement>($"{Url}/healthz")) is var h
                && h.GetProperty("pending").GetInt32() == 0 && h.GetProperty("owed_deletes").GetInt32() == 0,
            TimeSpan.FromSeconds(30),
            "no pending writes and no owed deletes");
        var leftovers = Enumerable.Range(0, Volumes.Length).SelectMany(TmpLeftovers).ToList();
        Assert.True(leftovers.Count <= explainedTmp, $"{leftovers.Count} unexplained temp files (scenario allows {explainedTmp}): {string.Join(", ", leftovers)}");
        foreach (var (key, bytes) in acked)
        {
            Assert.Equal(bytes, await Client.GetByteArrayAsync($"{Url}/{key}"));
        }
        foreach (var key in deleted)
        {
            using var resp = await Client.GetAsync($"{Url}/{key}");
            Assert.Equal(HttpStatusCode.NotFound, resp.StatusCode);
        }

        var first = await OpsAsync("verify", deep: true);
        var context = string.Join("\n", first.Details) + "\n" + LogLinesAbout(first.Details);
        var bad = first.Details.Where(d => d.StartsWith("corrupted:", StringComparison.Ordinal) || d.StartsWith("under-replicated:", StringComparison.Ordinal))
            .Select(d => d.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1].TrimEnd(':')).ToHashSet(StringComparer.Ordinal);
        var expected = (damaged ?? []).Select(k => KeyCodec.Encode(System.Text.Encoding.UTF8.GetBytes(k))).ToHashSet(StringComparer.Ordinal);
        Assert.True(bad.SetEquals(expected), $"verify before repair: damaged keys [{string.Join(", ", bad)}], scenario named [{string.Join(", ", expected)}]\n{context}");
        Assert.Equal(0, first.Count("unreachable_nodes"));
        Assert.Equal(0, first.Count("errors"));

        var repair = await OpsAsync("repair");
        Assert.Equal(0, repair.Count("left_under_replicated"));
        Assert.Equal(0, repair.Count("unrecoverable"));
        var verify = await OpsAsync("verify", deep: true);
        Assert.True(verify.Clean, string.Join("\n", verify.Details) + "\n" + LogLinesAbout(verify.Details));
        for (var i = 0; i < Volumes.Length; i++)
        {
            (await Admin.PostAsync($"{VolumeUrl(i)}/admin/sweep_tmp?safe_age_secs=0", null)).EnsureSuccessStatusCode();
            Assert.Empty(Directory.GetFiles(Path.Combine(VolumeDir(i), "tmp")));
        }
    }

    /// <summary>Lines of every process's output that mention a key named in the report's details.</summary>
    private string LogLinesAbout(IEnumerable<string> details)
    {
        var keys = details.Select(d => d.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Where(w => w.Length > 1).Select(w => w[1].TrimEnd(':')).Distinct().ToList();
        var procs = Volumes.Select((v, i) => ($"vol{i}", v)).Append(("coord", Coordinator));
        return string.Join("\n", procs.Where(p => p.Item2 is not null).SelectMany(p => p.Item2!.Output.Split('\n')
            .Where(l => keys.Any(k => l.Contains(k, StringComparison.Ordinal))).Take(40).Select(l => $"{p.Item1}: {l}")));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var v in Volumes)
        {
            if (v is not null)
            {
                if (!v.HasExited)
                {
                    Signal(v, "CONT");
                }
                v.Dispose();
            }
        }
        foreach (var coord in new[] { Coordinator, CoordinatorB })
        {
            if (coord is { HasExited: false })
            {
                Signal(coord, "CONT");
            }
            coord?.Dispose();
        }
        Client.Dispose();
        Admin.Dispose();
        await Task.Yield();
        TempDir.Delete(Root);
    }
}

/// <summary>How to start one process of a <see cref="ProcessCluster"/>: extra environment and a wrapper command.</summary>
public sealed record ProcessHook(IDictionary<string, string>? Env = null, IReadOnlyList<string>? Wrapper = null);
