using System.Net;
using System.Security.Cryptography;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Faults;

/// <summary>
/// The durability point proven from system calls (issue 12, item 1): the volumes and the coordinator run under
/// `strace -f`, and <see cref="DurabilityChecker"/> checks per object that every fsync, rename and WAL sync the
/// durability rule needs happened, in order, before the client heard yes. The mutation runs switch one sync off
/// (NANOKV_SKIP_SYNC) and show the checker catches it, so a green run means something.
/// </summary>
public class DurabilityTests
{
    private static async Task<DurabilityChecker> RunTracedAsync(string? skipSync)
    {
        Assert.True(File.Exists("/usr/bin/strace"), "strace is required (.ci/run installs it)");
        var traces = TempDir.Create("strace");
        try
        {
            var env = skipSync is null ? null : new Dictionary<string, string> { ["NANOKV_SKIP_SYNC"] = skipSync };
            var ops = new List<TimedOp>();
            await using (var c = await ProcessCluster.StartAsync(volumes: 2, replicas: 2, hooks: name =>
                new ProcessHook(env, StraceLog.Wrapper(Path.Combine(traces, name + ".strace")))))
            {
                int[] sizes = [1, 1000, 300_000, 2 * 1024 * 1024];
                for (var i = 0; i < sizes.Length; i++)
                {
                    var start = Now();
                    using var put = await c.Client.PutAsync($"{c.Url}/dur-{i}", new ByteArrayContent(RandomNumberGenerator.GetBytes(sizes[i])));
                    Assert.Equal(HttpStatusCode.Created, put.StatusCode);
                    ops.Add(new TimedOp("PUT", $"dur-{i}", start, Now()));
                }
                for (var i = 0; i < 2; i++)
                {
                    var start = Now();
                    using var del = await c.Client.DeleteAsync($"{c.Url}/dur-{i}");
                    Assert.Equal(HttpStatusCode.NoContent, del.StatusCode);
                    ops.Add(new TimedOp("DELETE", $"dur-{i}", start, Now()));
                }
                // Stop every process gracefully so strace flushes its trace.
                foreach (var p in c.Volumes.Append(c.Coordinator))
                {
                    await p!.TerminateAsync(TimeSpan.FromSeconds(30));
                }
            }
            var volumes = Enumerable.Range(0, 2).ToDictionary(i => $"vol{i}", i => StraceLog.ParseFile(Path.Combine(traces, $"vol{i}.strace")));
            var checker = new DurabilityChecker(volumes, StraceLog.ParseFile(Path.Combine(traces, "coord.strace"))).Check(ops);
            Console.WriteLine($"durability under strace (skip {skipSync ?? "nothing"}): {ops.Count} ops, {checker.Checks} ordering checks, {checker.Violations.Count} violations"
                + string.Concat(checker.Violations.Take(8).Select(v => "\n  " + v)));
            return checker;
        }
        finally
        {
            if (Environment.GetEnvironmentVariable("NANOKV_KEEP_TRACES") is not { Length: > 0 })
            {
                TempDir.Delete(traces);
            }
            else
            {
                Console.WriteLine($"traces kept in {traces}");
            }
        }
    }

    private static double Now() => (DateTime.UtcNow - DateTime.UnixEpoch).TotalSeconds;

    [Fact]
    public async Task EveryAcknowledgedPutAndDeleteIsDurableBeforeItsAnswerAtTheSyscallLevel()
    {
        var checker = await RunTracedAsync(skipSync: null);
        Assert.True(checker.Violations.Count == 0, string.Join("\n", checker.Violations));
        // 4 PUTs × (2 volumes × 3 + 2) + 2 DELETEs × (2 volumes × 3 + 1): a run that saw nothing cannot pass.
        Assert.True(checker.Checks >= 46, $"only {checker.Checks} checks");
    }

    [Theory]
    [InlineData(CrashPoints.DataFsync, "not fsync'd before its rename into blobs/")]
    [InlineData(CrashPoints.DirFsync, "not fsync'd after the rename and before the commit was answered")]
    [InlineData(CrashPoints.WalSync, "Committed metadata not synced (WAL fdatasync) before the client's answer")]
    public async Task TheCheckerFailsWhenOneSyncIsSkipped(string skipped, string expected)
    {
        var checker = await RunTracedAsync(skipped);
        // Every PUT lost that sync (on every volume, or in the coordinator), and the checker says so; nothing else.
        Assert.Equal(skipped == CrashPoints.WalSync ? 4 : 4 * 2, checker.Violations.Count(v => v.Contains(expected, StringComparison.Ordinal)));
        Assert.All(checker.Violations, v => Assert.Contains(expected, v, StringComparison.Ordinal));
    }
}
