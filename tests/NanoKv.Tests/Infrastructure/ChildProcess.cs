using System.Diagnostics;

namespace NanoKv.Tests.Infrastructure;

/// <summary>
/// A volume or coordinator run as a real child process (`dotnet volume.dll …`), for tests that kill -9
/// or measure a process's memory. Killed (whole tree) on dispose.
/// </summary>
public sealed class ChildProcess : IDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _output = new();

    private ChildProcess(Process p, string url)
    {
        _process = p;
        Url = url;
    }

    public string Url { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>Waits (bounded) for the process to end by itself, e.g. at a crash point.</summary>
    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
    }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>
    /// Starts `dotnet {assembly}.dll args` from the test's output folder and waits for /healthz. A wrapper
    /// (e.g. `strace -f -o FILE` or `faketime -1h`) runs in front of `dotnet`; Kill then ends the whole tree.
    /// </summary>
    public static async Task<ChildProcess> StartAsync(string assembly, int port, IEnumerable<string> args, IDictionary<string, string>? env = null, IReadOnlyList<string>? wrapper = null)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, assembly + ".dll");
        var psi = new ProcessStartInfo(wrapper is { Count: > 0 } ? wrapper[0] : "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (wrapper is { Count: > 0 })
        {
            foreach (var w in wrapper.Skip(1))
            {
                psi.ArgumentList.Add(w);
            }
            psi.ArgumentList.Add("dotnet");
        }
        psi.ArgumentList.Add(dll);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        // Tests start dozens of servers, often while timing-sensitive tests run: keep the precompiled framework
        // code (quick start) unless a test asks for the production default (JitMode; RuntimeSettingsTests).
        psi.Environment["NANOKV_READY_TO_RUN"] = "1";
        // SecurityTests sets the private-CA variable in this process for a moment; a server started by a
        // parallel test must not inherit it (its certificate folder is deleted afterwards: the child crashed).
        psi.Environment.Remove(NanoKv.Core.NodeHttp.CaEnvVar);
        foreach (var (k, v) in env ?? new Dictionary<string, string>())
        {
            psi.Environment[k] = v;
        }
        var p = Process.Start(psi)!;
        var child = new ChildProcess(p, $"http://127.0.0.1:{port}");
        p.OutputDataReceived += (_, e) => child.Append(e.Data);
        p.ErrorDataReceived += (_, e) => child.Append(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(30))
        {
            if (p.HasExited)
            {
                throw new InvalidOperationException($"{assembly} exited with {p.ExitCode}: {child.Output}");
            }
            try
            {
                using var resp = await http.GetAsync(child.Url + "/healthz");
                if (resp.IsSuccessStatusCode)
                {
                    return child;
                }
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }
            await Task.Delay(50);
        }
        child.Dispose();
        throw new TimeoutException($"{assembly} did not become healthy: {child.Output}");
    }

    /// <summary>Peak resident set size (VmHWM) in bytes, from /proc.</summary>
    public long PeakRssBytes() => StatusBytes("VmHWM:");

    /// <summary>
    /// Resident anonymous memory now (RssAnon: heaps, buffers), without file pages the process maps — a
    /// volume's verified pins are page cache, bounded by --pin-bytes, not memory a request allocates.
    /// </summary>
    public long AnonRssBytes() => _process.HasExited ? -1 : StatusBytes("RssAnon:");

    private long StatusBytes(string field)
    {
        foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
        {
            if (line.StartsWith(field, StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
            }
        }
        return -1;
    }

    /// <summary>
    /// SIGTERM to the program (under a wrapper such as strace: to the wrapper's children), then waits for the
    /// wrapper to exit, so a trace file is complete and flushed.
    /// </summary>
    public async Task TerminateAsync(TimeSpan timeout)
    {
        if (_process.HasExited)
        {
            return;
        }
        var children = $"/proc/{Pid}/task/{Pid}/children";
        var targets = File.Exists(children) ? File.ReadAllText(children).Split(' ', StringSplitOptions.RemoveEmptyEntries) : [];
        foreach (var pid in targets.Length > 0 ? targets : [$"{Pid}"])
        {
            using var kill = Process.Start("kill", ["-TERM", pid]);
            await kill.WaitForExitAsync();
        }
        await WaitForExitAsync(timeout);
    }

    /// <summary>SIGKILL: no shutdown code runs, like a power cut for the process.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}
