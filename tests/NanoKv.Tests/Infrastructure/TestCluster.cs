using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using NanoKv.Coordinator;
using NanoKv.Coordinator.Core;
using NanoKv.Volume;

namespace NanoKv.Tests.Infrastructure;

/// <summary>
/// N volumes and a coordinator in this process, on 127.0.0.1 with ephemeral ports, under one temp folder.
/// Volumes can be stopped and restarted on the same folder and port; everything is torn down on dispose.
/// </summary>
public sealed class TestCluster : IAsyncDisposable
{
    public static readonly HealthSettings FastHealth = new()
    {
        ProbeInterval = TimeSpan.FromMilliseconds(200),
        SuspectAfter = TimeSpan.FromSeconds(1),
        DownAfter = TimeSpan.FromSeconds(2),
        DownAfterFailures = 2,
    };

    private readonly List<VolumeOptions> _volumeOptions = [];
    private CoordinatorOptions _coordOptions = null!;
    private Action<int, string>? _prepareVolumeDir;
    private Func<VolumeOptions, VolumeOptions>? _configureVolume;

    private TestCluster(string root)
    {
        Root = root;
        Client = new HttpClient { Timeout = TimeSpan.FromMinutes(5) };
        NoRedirect = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { Timeout = TimeSpan.FromMinutes(5) };
    }

    public string Root { get; }

    /// <summary>Volumes by index; null while stopped.</summary>
    public List<VolumeServer?> Volumes { get; } = [];

    public CoordinatorServer Coordinator { get; private set; } = null!;

    /// <summary>Follows redirects, like `curl -L`.</summary>
    public HttpClient Client { get; }

    public HttpClient NoRedirect { get; }

    public string Url => Coordinator.Url;

    public string? Secret => _coordOptions.Secret;

    public static async Task<TestCluster> StartAsync(
        int volumes = 3,
        int replicas = 3,
        Func<CoordinatorOptions, CoordinatorOptions>? configure = null,
        string? secret = null,
        Action<int, string>? prepareVolumeDir = null,
        string? meta = null,
        Func<VolumeOptions, VolumeOptions>? configureVolume = null)
    {
        var cluster = new TestCluster(TempDir.Create("cluster")) { _prepareVolumeDir = prepareVolumeDir, _configureVolume = configureVolume };
        try
        {
            for (var i = 0; i < volumes; i++)
            {
                await cluster.AddVolumeAsync(secret, startCoordinatorFirst: false);
            }
            var options = new CoordinatorOptions
            {
                DbDir = Path.Combine(cluster.Root, "index"),
                MetaDsn = meta, // null = RocksDB in DbDir; "postgres://…" = PostgreSQL
                Port = 0,
                Volumes = cluster.Volumes.Select(v => v!.Url).ToList(),
                Secret = secret,
                DataPath = new DataPathSettings { Replicas = replicas, RetryTimeBox = TimeSpan.FromSeconds(3), AttemptTimeout = TimeSpan.FromSeconds(2) },
                Health = FastHealth,
                LogLevel = LogLevel.Warning,
            };
            cluster._coordOptions = configure?.Invoke(options) ?? options;
            await cluster.StartCoordinatorAsync();
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Adds and starts one more volume (fault injection enabled); returns its index.</summary>
    public async Task<int> AddVolumeAsync(string? secret = null, bool startCoordinatorFirst = true)
    {
        var index = _volumeOptions.Count;
        var options = new VolumeOptions
        {
            DataDir = Path.Combine(Root, $"vol{index}"),
            Port = 0,
            NodeId = $"vol{index}",
            Secret = secret ?? (startCoordinatorFirst ? _coordOptions.Secret : null),
            EnableFaults = true,
            LogLevel = LogLevel.Warning,
            HeartbeatInterval = TimeSpan.FromMilliseconds(200),
            CoordinatorUrl = startCoordinatorFirst ? Coordinator.Url : null,
        };
        options = _configureVolume?.Invoke(options) ?? options;
        Directory.CreateDirectory(options.DataDir);
        _prepareVolumeDir?.Invoke(index, options.DataDir);
        var v = VolumeServer.Create(options);
        await v.StartAsync();
        _volumeOptions.Add(options with { Port = new Uri(v.Url).Port });
        Volumes.Add(v);
        if (startCoordinatorFirst)
        {
            await WaitUntilAsync(() => Coordinator.Nodes.StatusOf(v.NodeId) == NodeStatus.Alive, TimeSpan.FromSeconds(10), $"{v.NodeId} alive");
        }
        return index;
    }

    public VolumeServer Volume(int i) => Volumes[i] ?? throw new InvalidOperationException($"volume {i} is stopped");

    public VolumeServer VolumeById(string nodeId) => Volumes.First(v => v?.NodeId == nodeId)!;

    public int IndexOf(string nodeId) => _volumeOptions.FindIndex(o => o.NodeId == nodeId);

    /// <summary>Stops volume i (connections refused from now on).</summary>
    public async Task StopVolumeAsync(int i, bool waitDown = false)
    {
        if (Volumes[i] is { } v)
        {
            _unfired.AddRange(v.Faults.NeverFired().Select(op => $"{v.NodeId}:{op}"));
            Volumes[i] = null;
            await v.DisposeAsync();
            if (waitDown)
            {
                await WaitUntilAsync(() => Coordinator.Nodes.StatusOf(v.NodeId) == NodeStatus.Down, TimeSpan.FromSeconds(10), $"{v.NodeId} down");
            }
        }
    }

    /// <summary>Starts volume i again on its folder and port, and (unless told not to) waits until the coordinator sees it alive.</summary>
    public async Task StartVolumeAsync(int i, bool waitAlive = true)
    {
        var v = VolumeServer.Create(_volumeOptions[i]);
        await v.StartAsync();
        Volumes[i] = v;
        if (!waitAlive)
        {
            return;
        }
        await WaitUntilAsync(() => Coordinator.Nodes.StatusOf(v.NodeId) == NodeStatus.Alive, TimeSpan.FromSeconds(10), $"{v.NodeId} alive");
    }

    public async Task StartCoordinatorAsync()
    {
        Coordinator = CoordinatorServer.Create(_coordOptions);
        await Coordinator.StartAsync();
        _coordOptions = _coordOptions with { Port = new Uri(Coordinator.Url).Port };
        foreach (var v in Volumes.Where(v => v is not null))
        {
            await WaitUntilAsync(() => Coordinator.Nodes.StatusOf(v!.NodeId) == NodeStatus.Alive, TimeSpan.FromSeconds(10), $"{v!.NodeId} alive");
        }
    }

    public async Task StopCoordinatorAsync() => await Coordinator.DisposeAsync();

    public async Task RestartCoordinatorAsync()
    {
        await StopCoordinatorAsync();
        await StartCoordinatorAsync();
    }

    /// <summary>Polls a condition (never a fixed sleep) until it holds or the timeout passes.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > timeout)
            {
                throw new TimeoutException($"timed out after {timeout.TotalSeconds}s waiting for {what}");
            }
            await Task.Delay(25);
        }
    }

    public static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!await condition())
        {
            if (sw.Elapsed > timeout)
            {
                throw new TimeoutException($"timed out after {timeout.TotalSeconds}s waiting for {what}");
            }
            await Task.Delay(25);
        }
    }

    /// <summary>Faults armed on volumes that were stopped before they fired.</summary>
    private readonly List<string> _unfired = [];

    /// <summary>
    /// Stops everything; then fails the test if a fault armed on any volume never fired (an injected fault
    /// that did not happen proves nothing). Disarmed by clearing the volume's faults.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        _unfired.AddRange(Volumes.Where(v => v is not null).SelectMany(v => v!.Faults.NeverFired().Select(op => $"{v.NodeId}:{op}")));
        if (Coordinator is not null)
        {
            try
            {
                await Coordinator.DisposeAsync();
            }
            catch (ObjectDisposedException)
            {
            }
        }
        foreach (var v in Volumes.Where(v => v is not null))
        {
            await v!.DisposeAsync();
        }
        Client.Dispose();
        NoRedirect.Dispose();
        TempDir.Delete(Root);
        Assert.True(_unfired.Count == 0, $"armed faults that never fired: {string.Join(", ", _unfired)}");
    }

    /// <summary>
    /// A TCP port free right now, for servers that need a port before they start: below the kernel's ephemeral
    /// range (10000-32000, 16 apart) and never one handed out before in this test run. A port from bind(0) is released before its server binds it, and meanwhile anything that binds port 0 (a
    /// volume's read port, an outgoing connection) may take it: CI saw a coordinator's port answered by a
    /// volume's read port. Below the ephemeral range the kernel never hands ports out by itself.
    /// </summary>
    public static int FreePort()
    {
        lock (HandedOut)
        {
            for (var tries = 0; tries < 10_000; tries++)
            {
                // A stride of 16: `coord dev` and similar take the ports after the one they are given.
                _nextPort = _nextPort + Stride >= 32_000 ? 10_000 + (++_wraps % Stride) : _nextPort + Stride;
                if (HandedOut.Contains(_nextPort))
                {
                    continue;
                }
                try
                {
                    using var l = new TcpListener(IPAddress.Loopback, _nextPort);
                    l.Start();
                }
                catch (SocketException)
                {
                    continue; // in use by something else
                }
                HandedOut.Add(_nextPort);
                return _nextPort;
            }
        }
        throw new InvalidOperationException("no free port in 10000-32000");
    }

    private const int Stride = 16;
    private static int _nextPort = 10_000 + (Random.Shared.Next(1_000) * Stride);
    private static int _wraps;

    private static readonly HashSet<int> HandedOut = [];
}

/// <summary>Temp folders for tests, removed even when the test fails.</summary>
public static class TempDir
{
    public static string Create(string tag)
    {
        var dir = Path.Combine(Path.GetTempPath(), "nanokv-tests", $"{tag}-{Guid.NewGuid():N}"[..20]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static void Delete(string dir)
    {
        for (var attempt = 0; attempt < 3; attempt++)
        {
            try
            {
                if (Directory.Exists(dir))
                {
                    Directory.Delete(dir, recursive: true);
                }
                return;
            }
            catch (IOException)
            {
                Thread.Sleep(100);
            }
        }
    }
}
