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

    /// <summary>
    /// A correct PUT as a loaded machine traces it: the volume's strace stamps its commit answer's return after the
    /// coordinator already read it, wrote and synced the WAL and answered the client, and a 204 to someone else
    /// goes out inside the client's window. None of that is a violation; dropping the folder fsync is exactly one.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheCheckerTiesCallsToTheOpByContentNotByWhichCameFirst(bool skipDirFsync)
    {
        string[] coordinator =
        [
            """100 1000.000100 recvfrom(20<socket:[1]>, "PUT /k HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 65536, 0, NULL, NULL) = 40""",
            """101 1000.000150 sendto(21<socket:[9]>, "HTTP/1.1 204 No Content\r\n\r\n", 27, 0, NULL, 0) = 27""",
            """100 1000.000500 write(30</d/index/000004.log>, "\1\7m/k{\"state\":\"Committed\",\"uploadId\":\"u1\"}", 44) = 44""",
            """100 1000.000600 fdatasync(30</d/index/000004.log>) = 0""",
            """100 1000.000700 sendto(20<socket:[1]>, "HTTP/1.1 201 Created\r\n\r\n{\"key\":\"k\"}", 35, 0, NULL, 0) = 35""",
        ];
        string[] volume =
        [
            """200 1000.000200 fsync(5</v/uploads/u1.data>) = 0""",
            """200 1000.000250 rename("/v/uploads/u1.data", "/v/blobs/ab/k") = 0""",
            """200 1000.000300 fsync(6</v/blobs/ab>) = 0""",
            """200 1000.000400 sendto(7<socket:[2]>, "HTTP/1.1 200 OK\r\n\r\n{\"committed\":true,\"upload_id\":\"u1\",\"version\":1}", 60, 0, NULL, 0 <unfinished ...>""",
            """200 1000.000900 <... sendto resumed>) = 60""",
        ];
        var volumes = new Dictionary<string, List<Syscall>> { ["vol0"] = StraceLog.Parse(volume.Where(l => !skipDirFsync || !l.Contains("/v/blobs/ab>", StringComparison.Ordinal))) };
        var checker = new DurabilityChecker(volumes, StraceLog.Parse(coordinator)).Check([new TimedOp("PUT", "k", 1000.0, 1000.0008)]);
        Assert.Equal(skipDirFsync ? ["PUT k: vol0: folder of k not fsync'd after the rename and before the commit was answered"] : [], checker.Violations);
        Assert.Equal(5, checker.Checks);
    }
}
