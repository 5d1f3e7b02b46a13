using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using NanoKv.Core;
using NanoKv.Metadata;
using NanoKv.Ops;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Ops;

/// <summary>
/// Each resumable command runs as a real `coord` process that dies abruptly part-way (the
/// NANOKV_OPS_CRASH_AFTER hook calls Environment.FailFast: no finally blocks, no flush, like kill -9),
/// then runs again with the same arguments and must finish with the end state of an uninterrupted run.
/// </summary>
public class ResumeTests
{
    private static async Task<(int Exit, string Stdout, string Stderr)> RunCoordAsync(IEnumerable<string> args, int? crashAfter)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "coord.dll"));
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        if (crashAfter is int k)
        {
            psi.Environment["NANOKV_OPS_CRASH_AFTER"] = k.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw;
        }
        return (p.ExitCode, await stdout, await stderr);
    }

    private static async Task<Dictionary<string, byte[]>> PutManyAsync(TestCluster c, int count)
    {
        var written = new Dictionary<string, byte[]>();
        for (var i = 0; i < count; i++)
        {
            var data = RandomNumberGenerator.GetBytes(3000 + i);
            (await c.Client.PutAsync($"{c.Url}/r{i:D3}", new ByteArrayContent(data))).EnsureSuccessStatusCode();
            written[$"r{i:D3}"] = data;
        }
        return written;
    }

    private static async Task<JsonElement> CrashThenResumeAsync(TestCluster c, string command, params string[] extra)
    {
        await c.StopCoordinatorAsync();
        var db = c.Coordinator.Options.DbDir;
        var nodes = string.Join(',', c.Volumes.Select(v => $"{v!.NodeId}={v.Url}"));
        string[] args = [command, "--index", db, "--nodes", nodes, "--concurrency", "1", "--json", .. extra];

        var crashed = await RunCoordAsync(args, crashAfter: 3);
        Assert.True(crashed.Exit != 0 && crashed.Stderr.Contains("NANOKV_OPS_CRASH_AFTER", StringComparison.Ordinal), crashed.Stdout + crashed.Stderr);
        var journal = Directory.GetFiles(Path.Combine(db, "ops-journal"), $"{command}-*.journal");
        Assert.Single(journal);
        Assert.True(File.ReadAllLines(journal[0]).Length >= 3, "journal kept the finished keys");

        var resumed = await RunCoordAsync(args, crashAfter: null);
        Assert.True(resumed.Exit == 0, resumed.Stdout + resumed.Stderr);
        Assert.Empty(Directory.GetFiles(Path.Combine(db, "ops-journal"), $"{command}-*.journal")); // done: discarded
        await c.StartCoordinatorAsync();
        var report = JsonDocument.Parse(resumed.Stdout).RootElement;
        Assert.True(report.GetProperty("resumed_keys").GetInt32() >= 3);
        return report;
    }

    private static async Task AssertCleanAsync(TestCluster c)
    {
        var o = new OpsOptions { Command = "verify", Deep = true, Nodes = c.Volumes.Select(v => $"{v!.NodeId}={v.Url}").ToList() };
        var verify = await OpsCli.RunLiveAsync(c.Url, o, null, quiet: true, CancellationToken.None);
        Assert.True(verify.Clean, string.Join("\n", verify.Details));
    }

    [Fact]
    public async Task RepairKilledMidRunFinishesOnRerun()
    {
        await using var c = await TestCluster.StartAsync();
        var data = await PutManyAsync(c, 10);
        Directory.Delete(c.Volume(0).Store.BlobsDir, recursive: true);
        Directory.CreateDirectory(c.Volume(0).Store.BlobsDir);

        var report = await CrashThenResumeAsync(c, "repair");
        Assert.True(report.GetProperty("counts").GetProperty("skipped_journaled").GetInt32() >= 3);
        foreach (var (name, bytes) in data)
        {
            Assert.Equal(bytes, await File.ReadAllBytesAsync(c.Volume(0).Store.BlobPath(Encoding.UTF8.GetBytes(name))));
        }
        await AssertCleanAsync(c);
    }

    [Fact]
    public async Task RebalanceKilledMidRunFinishesOnRerun()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 2);
        var data = await PutManyAsync(c, 24);
        await c.AddVolumeAsync();

        await CrashThenResumeAsync(c, "rebalance");
        var nodes = c.Volumes.Select(v => v!.NodeId).ToList();
        foreach (var (name, bytes) in data)
        {
            var key = Encoding.UTF8.GetBytes(name);
            var meta = c.Coordinator.Store.Get(key)!;
            Assert.Equal(Placement.Choose(key, nodes, 2).Order(), meta.Replicas.Order());
            foreach (var v in c.Volumes)
            {
                Assert.Equal(meta.Replicas.Contains(v!.NodeId), File.Exists(v.Store.BlobPath(key))); // no duplicates left
            }
            Assert.Equal(bytes, await c.Client.GetByteArrayAsync($"{c.Url}/{name}"));
        }
        await AssertCleanAsync(c);
    }

    [Fact]
    public async Task RebuildKilledMidRunFinishesOnRerun()
    {
        await using var c = await TestCluster.StartAsync();
        var data = await PutManyAsync(c, 10);
        (await c.Client.DeleteAsync($"{c.Url}/r000")).EnsureSuccessStatusCode();
        await c.StopCoordinatorAsync();
        TempDir.Delete(c.Coordinator.Options.DbDir);
        Directory.CreateDirectory(c.Coordinator.Options.DbDir);
        await c.StartCoordinatorAsync();

        await CrashThenResumeAsync(c, "rebuild");
        foreach (var (name, bytes) in data.Skip(1))
        {
            Assert.Equal(bytes, await c.Client.GetByteArrayAsync($"{c.Url}/{name}"));
        }
        Assert.Equal(ObjectState.Tombstoned, c.Coordinator.Store.Get("r000"u8)!.State);
        await AssertCleanAsync(c);
    }

    [Fact]
    public async Task GcKilledMidRunFinishesOnRerun()
    {
        await using var c = await TestCluster.StartAsync();
        await PutManyAsync(c, 10);
        await c.StopVolumeAsync(0, waitDown: true);
        for (var i = 0; i < 8; i++)
        {
            (await c.Client.DeleteAsync($"{c.Url}/r{i:D3}")).EnsureSuccessStatusCode();
        }
        await c.StartVolumeAsync(0);

        var report = await CrashThenResumeAsync(c, "gc", "--tombstone-ttl", "0s", "--purge-tombstone-meta");
        for (var i = 0; i < 8; i++)
        {
            var key = Encoding.UTF8.GetBytes($"r{i:D3}");
            Assert.False(File.Exists(c.Volume(0).Store.BlobPath(key)));
            Assert.Null(c.Coordinator.Store.Get(key));
        }
        using var live = await c.Client.GetAsync($"{c.Url}/r009");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        Assert.True(report.GetProperty("clean").GetBoolean());
        await AssertCleanAsync(c);
    }
}
