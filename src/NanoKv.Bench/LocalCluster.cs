using System.Diagnostics;
using System.Globalization;

namespace NanoKv.Bench;

/// <summary>A coordinator and N volumes as child processes of this bench (so each one's peak RSS is measurable).</summary>
public sealed class LocalCluster : IAsyncDisposable
{
    private readonly List<(string Name, Process Process)> _processes = [];

    private LocalCluster(string dataDir) => DataDir = dataDir;

    public string DataDir { get; }

    public string CoordinatorUrl { get; private set; } = "";

    /// <summary>The S3 listener and its generated user, when one was asked for.</summary>
    public (string Endpoint, string AccessKey, string SecretKey)? S3 { get; private set; }

    public static async Task<LocalCluster> StartAsync(string dataDir, int volumes, int replicas, int coordPort, int volumeStartPort, bool noVerifyReads, int? s3Port, CancellationToken ct)
    {
        var cluster = new LocalCluster(dataDir);
        try
        {
            var urls = new List<string>();
            for (var i = 0; i < volumes; i++)
            {
                var port = volumeStartPort + i;
                string[] args = ["--data", Path.Combine(dataDir, $"vol{i + 1}"), "--port", port.ToString(CultureInfo.InvariantCulture)];
                await cluster.StartAsync($"volume{i + 1}", "volume.dll", port, ct, noVerifyReads ? [.. args, "--no-verify-reads"] : args);
                urls.Add($"http://127.0.0.1:{port}");
            }
            string[] coordArgs = ["serve", "--db", Path.Combine(dataDir, "index"),
                "--replicas", replicas.ToString(CultureInfo.InvariantCulture), "--volumes", string.Join(',', urls), "--port", coordPort.ToString(CultureInfo.InvariantCulture)];
            if (s3Port is { } sp)
            {
                var (ak, sk) = NanoKv.S3.S3Users.Generate();
                coordArgs = [.. coordArgs, "--s3-port", sp.ToString(CultureInfo.InvariantCulture), "--s3-users", $"{ak}:{sk}"];
                cluster.S3 = ($"http://127.0.0.1:{sp}", ak, sk);
            }
            await cluster.StartAsync("coordinator", "coord.dll", coordPort, ct, coordArgs);
            cluster.CoordinatorUrl = $"http://127.0.0.1:{coordPort}";
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Peak resident set (VmHWM) of every process, in bytes.</summary>
    public Dictionary<string, long> PeakRss()
    {
        var result = new Dictionary<string, long>();
        foreach (var (name, p) in _processes)
        {
            try
            {
                var line = File.ReadLines($"/proc/{p.Id}/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
                if (line is not null)
                {
                    result[name] = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
                }
            }
            catch (IOException)
            {
            }
        }
        return result;
    }

    /// <summary>
    /// CPU time (user + system, all threads) the cluster's processes have used so far, from /proc/PID/stat;
    /// null where /proc is missing.
    /// </summary>
    public double? CpuSeconds()
    {
        double total = 0;
        foreach (var (_, p) in _processes)
        {
            try
            {
                var stat = File.ReadAllText($"/proc/{p.Id}/stat");
                // Fields after the command (which may contain spaces) start after the last ')'; utime and stime are fields 14 and 15.
                var f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                total += (long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture)) / (double)ClockTicks;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException)
            {
                return null;
            }
        }
        return total;
    }

    /// <summary>USER_HZ of /proc times: 100 on every Linux ABI .NET runs on.</summary>
    private const int ClockTicks = 100;

    private async Task StartAsync(string name, string dll, int port, CancellationToken ct, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, dll));
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {dll}");
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _processes.Add((name, p));
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(30))
        {
            if (p.HasExited)
            {
                throw new InvalidOperationException($"{name} exited with code {p.ExitCode} (port {port} in use?)");
            }
            try
            {
                using var r = await http.GetAsync($"http://127.0.0.1:{port}/healthz", ct);
                if (r.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException) when (!ct.IsCancellationRequested)
            {
            }
            await Task.Delay(100, ct);
        }
        throw new TimeoutException($"{name} did not become healthy on port {port}");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var (_, p) in _processes)
        {
            if (!p.HasExited)
            {
                p.Kill(entireProcessTree: true);
                await p.WaitForExitAsync();
            }
            p.Dispose();
        }
    }
}
