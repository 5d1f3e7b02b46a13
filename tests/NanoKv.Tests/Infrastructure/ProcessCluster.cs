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
    private readonly int _replicas;
    private readonly int[] _volumePorts;
    private readonly int _coordPort;

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

    public string Url => $"http://127.0.0.1:{_coordPort}";

    /// <summary>Public client, follows redirects.</summary>
    public HttpClient Client { get; }

    /// <summary>Carries the cluster secret.</summary>
    public HttpClient Admin { get; }

    public string VolumeUrl(int i) => $"http://127.0.0.1:{_volumePorts[i]}";

    public string VolumeDir(int i) => Path.Combine(Root, $"vol{i}");

    public string IndexDir => Path.Combine(Root, "index");

    public static async Task<ProcessCluster> StartAsync(int volumes = 3, int replicas = 2)
    {
        var c = new ProcessCluster(volumes, replicas);
        try
        {
            for (var i = 0; i < volumes; i++)
            {
                await c.StartVolumeAsync(i);
            }
            await c.StartCoordinatorAsync();
            await c.WaitAllAliveAsync();
            return c;
        }
        catch
        {
            await c.DisposeAsync();
            throw;
        }
    }

    public async Task StartVolumeAsync(int i)
    {
        Volumes[i] = await ChildProcess.StartAsync("volume", _volumePorts[i],
        [
            "--data", VolumeDir(i), "--port", $"{_volumePorts[i]}", "--node-id", $"vol{i}", "--coordinator", Url,
            "--secret", Secret, "--heartbeat-ms", "200", "--enable-fault-injection",
        ]);
    }

    public async Task StartCoordinatorAsync()
    {
        Coordinator = await ChildProcess.StartAsync("coord", _coordPort,
        [
            "serve", "--db", IndexDir, "--port", $"{_coordPort}", "--replicas", $"{_replicas}",
            "--volumes", string.Join(',', _volumePorts.Select((_, i) => VolumeUrl(i))), "--secret", Secret,
            "--probe-interval-ms", "200", "--suspect-after-ms", "1000", "--down-after-ms", "2000", "--retry-time-box-ms", "3000",
        ]);
    }

    public void KillVolume(int i) => Volumes[i]?.Kill();

    public void KillCoordinator() => Coordinator?.Kill();

    /// <summary>SIGSTOP / SIGCONT: the process keeps its sockets but stops answering, like a hung disk or a GC pause.</summary>
    public static void Signal(ChildProcess p, string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", $"{p.Pid}"]);
        kill.WaitForExit();
    }

    public async Task<string> StatusOfAsync(int i)
    {
        var nodes = await Admin.GetFromJsonAsync<JsonElement>($"{Url}/admin/nodes");
        return nodes.EnumerateArray().First(n => n.GetProperty("node_id").GetString() == $"vol{i}").GetProperty("status").GetString()!;
    }

    public Task WaitAllAliveAsync() => TestCluster.WaitUntilAsync(
        async () =>
        {
            for (var i = 0; i < Volumes.Length; i++)
            {
                if (await StatusOfAsync(i) != "alive")
                {
                    return false;
                }
            }
            return true;
        },
        TimeSpan.FromSeconds(20),
        "every volume alive");

    public async Task ArmAsync(int volume, string op, string mode, int count = 1, int status = 503, int stallMs = 30_000)
    {
        using var resp = await Admin.PostAsJsonAsync($"{VolumeUrl(volume)}/admin/faults", new { op, mode, count, status, stall_ms = stallMs });
        resp.EnsureSuccessStatusCode();
    }

    public Task<Report> OpsAsync(string command, bool deep = false) =>
        OpsCli.RunLiveAsync(Url, new OpsOptions { Command = command, Deep = deep }, Secret, quiet: true, CancellationToken.None);

    /// <summary>
    /// The end state every fault scenario must reach: acknowledged PUTs readable with their bytes, acknowledged
    /// DELETEs gone, nothing pending, tmp folders empty after a sweep, verify clean after repair.
    /// </summary>
    public async Task AssertConvergedAsync(IReadOnlyDictionary<string, byte[]> acked, IEnumerable<string> deleted)
    {
        await TestCluster.WaitUntilAsync(
            async () => (await Admin.GetFromJsonAsync<JsonElement>($"{Url}/healthz")) is var h
                && h.GetProperty("pending").GetInt32() == 0 && h.GetProperty("owed_deletes").GetInt32() == 0,
            TimeSpan.FromSeconds(30),
            "no pending writes and no owed deletes");
        foreach (var (key, bytes) in acked)
        {
            Assert.Equal(bytes, await Client.GetByteArrayAsync($"{Url}/{key}"));
        }
        foreach (var key in deleted)
        {
            using var resp = await Client.GetAsync($"{Url}/{key}");
            Assert.Equal(HttpStatusCode.NotFound, resp.StatusCode);
        }
        var repair = await OpsAsync("repair");
        Assert.Equal(0, repair.Count("left_under_replicated"));
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
        var keys = details.Select(d => d.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Where(w => w.Length > 1).Select(w => w[1]).Distinct().ToList();
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
                Signal(v, "CONT");
                v.Dispose();
            }
        }
        Coordinator?.Dispose();
        Client.Dispose();
        Admin.Dispose();
        await Task.Yield();
        TempDir.Delete(Root);
    }
}
