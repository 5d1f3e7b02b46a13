using System.Net;
using System.Text.Json;

namespace NanoKv.Tests.Perf;

/// <summary>
/// Guards the JIT setting that keeps BLAKE3 fast from the first second: with tiered compilation on, a loaded
/// coordinator or volume ran its hashing at the QuickJitted/instrumented tiers for most of a run (issue 10,
/// item 1). The built runtimeconfig.json of each server is what `dotnet coord.dll` / `dotnet volume.dll` obey.
/// </summary>
public class RuntimeSettingsTests
{
    [Theory]
    [InlineData("coord")]
    [InlineData("volume")]
    public void ServersRunFullyOptimisedCodeFromTheFirstCall(string assembly)
    {
        var file = Path.Combine(AppContext.BaseDirectory, assembly + ".runtimeconfig.json");
        Assert.True(File.Exists(file), $"{file} missing: the server's runtime settings are not deployed with it");
        using var json = JsonDocument.Parse(File.ReadAllText(file));
        var props = json.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");
        Assert.True(props.TryGetProperty("System.Runtime.TieredCompilation", out var tiered), $"{assembly}: TieredCompilation is not set");
        Assert.Equal(JsonValueKind.False, tiered.ValueKind);
    }

    [Fact]
    public void TheVolumeOpensFilesWithoutAdvisoryLocks()
    {
        // Each PUT opens several files; .NET's FileShare emulation adds an flock (and an ftruncate for
        // FileMode.Create) to every open unless this is set.
        var file = Path.Combine(AppContext.BaseDirectory, "volume.runtimeconfig.json");
        using var json = JsonDocument.Parse(File.ReadAllText(file));
        var props = json.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");
        Assert.True(props.TryGetProperty("System.IO.DisableFileLocking", out var off), "volume: DisableFileLocking is not set");
        Assert.Equal(JsonValueKind.True, off.ValueKind);
    }

    [Fact]
    public async Task ServerProcessesRunWithoutReadyToRunCode()
    {
        // Precompiled framework code is never recompiled with tiering off and costs ~30 % more CPU per
        // request; the servers re-execute themselves with DOTNET_ReadyToRun=0 (JitMode) and say so at start.
        var root = Path.Combine(Path.GetTempPath(), "nanokv-tests", "jit-" + Guid.NewGuid().ToString("N"));
        var production = new Dictionary<string, string> { ["NANOKV_READY_TO_RUN"] = "0" };
        var volumePort = NanoKv.Tests.Infrastructure.TestCluster.FreePort();
        var coordPort = NanoKv.Tests.Infrastructure.TestCluster.FreePort();
        using var volume = await NanoKv.Tests.Infrastructure.ChildProcess.StartAsync("volume", volumePort,
            ["--data", Path.Combine(root, "v1"), "--port", $"{volumePort}"], production);
        using var coord = await NanoKv.Tests.Infrastructure.ChildProcess.StartAsync("coord", coordPort,
            ["serve", "--db", Path.Combine(root, "index"), "--port", $"{coordPort}", "--volumes", volume.Url, "--replicas", "1"], production);
        Assert.Contains("(full JIT, ReadyToRun off)", volume.Output, StringComparison.Ordinal);
        Assert.Contains("(full JIT, ReadyToRun off)", coord.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServersWatchNoFilesWhileTheyWrite()
    {
        // Configuration reload-on-change watched the working directory recursively; with data under it every
        // blob a volume wrote went through a FileSystemWatcher (issue 10: ~19 % of a volume's CPU).
        var root = Path.Combine(Path.GetTempPath(), "nanokv-tests", "watch-" + Guid.NewGuid().ToString("N"));
        var volumePort = NanoKv.Tests.Infrastructure.TestCluster.FreePort();
        var coordPort = NanoKv.Tests.Infrastructure.TestCluster.FreePort();
        using var volume = await NanoKv.Tests.Infrastructure.ChildProcess.StartAsync("volume", volumePort,
            ["--data", Path.Combine(root, "v1"), "--port", $"{volumePort}"]);
        using var coord = await NanoKv.Tests.Infrastructure.ChildProcess.StartAsync("coord", coordPort,
            ["serve", "--db", Path.Combine(root, "index"), "--port", $"{coordPort}", "--volumes", volume.Url, "--replicas", "1"]);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            // 503 until the coordinator's first probe saw the volume alive.
            using var put = await http.PutAsync($"{coord.Url}/watch-{Guid.NewGuid():N}", new ByteArrayContent(new byte[4096]));
            if (put.StatusCode != HttpStatusCode.ServiceUnavailable || DateTime.UtcNow > deadline)
            {
                Assert.Equal(HttpStatusCode.Created, put.StatusCode);
                break;
            }
            await Task.Delay(100);
        }

        // The probe itself must see a watcher: this process watches a folder tree for a moment.
        var watched = Directory.CreateDirectory(Path.Combine(root, "probe", "sub"));
        using (var watcher = new FileSystemWatcher(watched.Parent!.FullName) { IncludeSubdirectories = true, EnableRaisingEvents = true })
        {
            Assert.True(InotifyWatches(Environment.ProcessId) >= 2, "the inotify probe saw no watch of a live FileSystemWatcher");
        }
        Assert.Equal(0, InotifyWatches(volume.Pid));
        Assert.Equal(0, InotifyWatches(coord.Pid));
    }

    /// <summary>inotify watches a process holds, from /proc/PID/fdinfo of its inotify descriptors.</summary>
    private static int InotifyWatches(int pid)
    {
        var count = 0;
        foreach (var fd in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(fd).LinkTarget;
            }
            catch (IOException)
            {
                continue; // closed while listing
            }
            if (target is not null && target.Contains("inotify", StringComparison.Ordinal))
            {
                var info = $"/proc/{pid}/fdinfo/{Path.GetFileName(fd)}";
                count += File.Exists(info) ? File.ReadLines(info).Count(l => l.StartsWith("inotify wd:", StringComparison.Ordinal)) : 0;
            }
        }
        return count;
    }
}
