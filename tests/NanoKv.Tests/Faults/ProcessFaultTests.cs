using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;
using NanoKv.Tests.Metadata;
using NanoKv.Volume;

namespace NanoKv.Tests.Faults;

/// <summary>
/// Fault scenarios against real processes (kill -9, SIGSTOP, restarts). Each ends with
/// <see cref="ProcessCluster.AssertConvergedAsync"/>: nothing acknowledged is lost, nothing deleted returns.
/// </summary>
public class ProcessFaultTests(PostgresFixture pg) : IClassFixture<PostgresFixture>
{
    /// <summary>The coordinator-crash scenarios run on both metadata backends (a Theory parameter).</summary>
    public static TheoryData<MetaBackendKind> Backends => MetaLocation.All;

    private static async Task<Dictionary<string, byte[]>> PutManyAsync(ProcessCluster c, string prefix, int count, int size = 100_000)
    {
        var acked = new Dictionary<string, byte[]>();
        for (var i = 0; i < count; i++)
        {
            var data = RandomNumberGenerator.GetBytes(size + i);
            using var put = await c.Client.PutAsync($"{c.Url}/{prefix}{i:D3}", new ByteArrayContent(data));
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
            acked[$"{prefix}{i:D3}"] = data;
        }
        return acked;
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task Scenario01_KillVolumeMidLargePutThenRestart(MetaBackendKind kind)
    {
        await using var c = await ProcessCluster.StartAsync(volumes: 3, replicas: 3, meta: await pg.MetaAsync(kind));
        var acked = await PutManyAsync(c, "before", 5);
        var killed = new TaskCompletionSource();
        var body = new RandomContent(64 * 1024 * 1024, chunk: 1024 * 1024)
        {
            CallbackAfter = 16 * 1024 * 1024,
            OnReached = () =>
            {
                c.KillVolume(1);
                killed.TrySetResult();
            },
        };
        HttpResponseMessage? put = null;
        try
        {
            put = await c.Client.PutAsync($"{c.Url}/big", body);
        }
        catch (HttpRequestException)
        {
        }
        // The kill fires once 16 MB went out; the upload cannot take longer than the client's own timeout.
        await killed.Task.WaitAsync(c.Client.Timeout);
        // Not acknowledged: the PUT fails (an error answer, or the connection closed under the upload)
        // and leaves nothing visible.
        Assert.True(put is null || !put.IsSuccessStatusCode, $"{put?.StatusCode}");
        put?.Dispose();
        using (var get = await c.Client.GetAsync($"{c.Url}/big"))
        {
            Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        }

        await c.StartVolumeAsync(1);
        await c.WaitAllAliveAsync();
        foreach (var (k, v) in await PutManyAsync(c, "after", 3))
        {
            acked[k] = v;
        }
        // Volume 1 died holding the upload's temp data and state file; nothing could abort them while it was down.
        await c.AssertConvergedAsync(acked, [], explainedTmp: 2);
    }

    /// <summary>
    /// The coordinator is killed while some or all replicas hold the upload but not every replica committed
    /// (their commit is stalled by a fault rule): restart must roll the write back, deterministically.
    /// </summary>
    [Theory]
    [InlineData(MetaBackendKind.RocksDb, 3, "before any replica committed")]
    [InlineData(MetaBackendKind.RocksDb, 1, "after some replicas committed")]
    [InlineData(MetaBackendKind.Postgres, 3, "before any replica committed")]
    [InlineData(MetaBackendKind.Postgres, 1, "after some replicas committed")]
    public async Task Scenario02_KillCoordinatorBeforeEveryReplicaCommittedRollsBack(MetaBackendKind kind, int stalledVolumes, string when)
    {
        await using var c = await ProcessCluster.StartAsync(volumes: 3, replicas: 3, meta: await pg.MetaAsync(kind));
        var acked = await PutManyAsync(c, "k", 3);
        for (var i = 0; i < stalledVolumes; i++)
        {
            await c.ArmAsync(i, "commit", "stall", stallMs: 60_000);
        }
        var data = RandomNumberGenerator.GetBytes(2 * 1024 * 1024);
        var put = c.Client.PutAsync($"{c.Url}/inflight", new ByteArrayContent(data));
        // The stalled volumes hold the whole upload; the others have committed it.
        await TestCluster.WaitUntilAsync(
            () => Enumerable.Range(0, 3).All(i => i < stalledVolumes
                ? BlobStore.UploadStates(Path.Combine(c.VolumeDir(i), "tmp")).Any(u => u.State == "uploaded")
                : Directory.EnumerateFiles(Path.Combine(c.VolumeDir(i), "blobs"), "inflight", SearchOption.AllDirectories).Any()),
            TimeSpan.FromSeconds(30),
            $"the write uploaded everywhere and committed on {3 - stalledVolumes} volumes");
        // "Uploaded" is written before the coordinator sends its commit: killing it then could beat the commit
        // to a stalled volume, and the rule would never fire. Kill only once every stall holds a commit.
        await TestCluster.WaitUntilAsync(
            async () =>
            {
                for (var i = 0; i < stalledVolumes; i++)
                {
                    if (await c.FaultHitsAsync(i, "commit") < 1)
                    {
                        return false;
                    }
                }
                return true;
            },
            TimeSpan.FromSeconds(30),
            $"the commit held by the stall on {stalledVolumes} volumes");
        c.KillCoordinator();
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => put.WaitAsync(TimeSpan.FromSeconds(30)));
        for (var i = 0; i < 3; i++)
        {
            // The stall must have held the commit on exactly the stalled volumes.
            Assert.Equal(i < stalledVolumes ? 1 : 0, await c.ClearFaultsAsync(i, "commit"));
        }
        await c.StartCoordinatorAsync();
        await c.WaitAllAliveAsync();
        await WaitNothingPendingAsync(c);
        using var get = await c.Client.GetAsync($"{c.Url}/inflight");
        Assert.True(get.StatusCode == HttpStatusCode.NotFound, $"{when}: expected rolled back, got {(int)get.StatusCode}");
        // The log line follows the metadata change (and the delete fan-out): wait for it rather than race it.
        await TestCluster.WaitUntilAsync(() => c.Coordinator!.Output.Contains("rolled back", StringComparison.Ordinal), TimeSpan.FromSeconds(30), "the recovery log says rolled back");
        await TestCluster.WaitUntilAsync(
            () => Enumerable.Range(0, 3).All(i => !Directory.EnumerateFiles(Path.Combine(c.VolumeDir(i), "blobs"), "inflight", SearchOption.AllDirectories).Any()),
            TimeSpan.FromSeconds(30),
            $"no blob of the rolled-back write ({when})");
        await c.AssertConvergedAsync(acked, []);
    }

    /// <summary>
    /// The real coordinator process dies at the crash point between its commit fan-out (every replica
    /// committed) and its metadata write: the client never hears yes, and restart rolls the write forward.
    /// </summary>
    [Theory]
    [MemberData(nameof(Backends))]
    public async Task Scenario02_KillCoordinatorAfterEveryReplicaCommittedRollsForward(MetaBackendKind kind)
    {
        await using var c = await ProcessCluster.StartAsync(volumes: 3, replicas: 3, meta: await pg.MetaAsync(kind));
        var acked = await PutManyAsync(c, "k", 3);
        c.KillCoordinator();
        await c.StartCoordinatorAsync(new Dictionary<string, string> { ["NANOKV_CRASH_AT"] = CrashPoint.CoordinatorAfterCommitFanOut });
        await c.WaitAllAliveAsync();
        var data = RandomNumberGenerator.GetBytes(2 * 1024 * 1024);
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => c.Client.PutAsync($"{c.Url}/inflight", new ByteArrayContent(data)).WaitAsync(TimeSpan.FromSeconds(60)));
        await c.Coordinator!.WaitForExitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains($"crash point {CrashPoint.CoordinatorAfterCommitFanOut}", c.Coordinator.Output, StringComparison.Ordinal);
        for (var i = 0; i < 3; i++)
        {
            Assert.True(Directory.EnumerateFiles(Path.Combine(c.VolumeDir(i), "blobs"), "inflight", SearchOption.AllDirectories).Any(), $"committed on vol{i}");
        }

        await c.StartCoordinatorAsync();
        await c.WaitAllAliveAsync();
        await WaitNothingPendingAsync(c);
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/inflight"));
        // The log line follows the metadata swap and the output is read asynchronously: await it.
        await TestCluster.WaitUntilAsync(() => c.Coordinator.Output.Contains("recovered pending inflight: rolled", StringComparison.Ordinal), TimeSpan.FromSeconds(10), "the recovery logged its outcome");
        Assert.Contains("recovered pending inflight: rolled forward", c.Coordinator.Output, StringComparison.Ordinal);
        acked["inflight"] = data;
        await c.AssertConvergedAsync(acked, []);
    }

    private static Task WaitNothingPendingAsync(ProcessCluster c) => TestCluster.WaitUntilAsync(
        async () => (await c.Admin.GetFromJsonAsync<JsonElement>($"{c.Url}/healthz")).GetProperty("pending").GetInt32() == 0,
        ProcessCluster.StatusChangeBound + ProcessCluster.RetryTimeBox,
        "recovery resolved the pending write");

    [Fact]
    public async Task Scenario03And06_StalledVolumeGoesDownThenAliveAndWritesAreRepaired()
    {
        await using var c = await ProcessCluster.StartAsync(volumes: 4, replicas: 3);
        var acked = await PutManyAsync(c, "k", 4);
        ProcessCluster.Signal(c.Volumes[2]!, "STOP");
        // While it hangs (sockets open, no answers), writes that pick it time out per attempt and go elsewhere.
        var sw = System.Diagnostics.Stopwatch.StartNew();
        foreach (var (k, v) in await PutManyAsync(c, "during", 6))
        {
            acked[k] = v;
        }
        // Each write waits at most one time box of attempts on the hung volume (it is suspect, and skipped, after
        // SuspectAfter); the bound comes from the configured timeouts, not a guess.
        var bound = (6 * (ProcessCluster.RetryTimeBox + ProcessCluster.AttemptTimeout)) + ProcessCluster.Slack;
        Assert.True(sw.Elapsed < bound, $"writes took {sw.Elapsed}, bound {bound}");
        Assert.Equal('T', ProcessCluster.ProcState(c.Volumes[2]!));
        await TestCluster.WaitUntilAsync(async () => await c.StatusOfAsync(2) == "down", ProcessCluster.StatusChangeBound, "stalled volume down");
        using (var del = await c.Client.DeleteAsync($"{c.Url}/k000"))
        {
            Assert.Equal(HttpStatusCode.NoContent, del.StatusCode);
        }
        acked.Remove("k000");
        ProcessCluster.Signal(c.Volumes[2]!, "CONT");
        await TestCluster.WaitUntilAsync(async () => await c.StatusOfAsync(2) == "alive", ProcessCluster.StatusChangeBound, "volume alive again");
        // A write whose prepare/upload reached the hung volume is aborted by the coordinator while the volume
        // cannot answer; the volume runs the queued request after SIGCONT and leaves that upload's data and state
        // file in tmp/ until the age-based sweep: at most one such upload, explained by this scenario.
        await c.AssertConvergedAsync(acked, ["k000"], explainedTmp: 2);
    }

    [Fact]
    public async Task Scenario09_RestartEverythingWithStaleTmpAndHalfRenamedBlob()
    {
        var c = await ProcessCluster.StartAsync(volumes: 3, replicas: 2);
        await using var _ = c;
        var acked = await PutManyAsync(c, "k", 6);
        c.KillCoordinator();
        for (var i = 0; i < 3; i++)
        {
            c.KillVolume(i);
        }
        // Leftovers of a crash: an upload in progress, and a blob copy that was being renamed into place.
        var tmp = Path.Combine(c.VolumeDir(0), "tmp");
        await File.WriteAllBytesAsync(Path.Combine(tmp, "deadbeef.data"), RandomNumberGenerator.GetBytes(5000));
        await File.WriteAllTextAsync(Path.Combine(tmp, "deadbeef.json"), "{\"key\":\"gone\",\"state\":\"prepared\"}");
        var blob = Directory.EnumerateFiles(Path.Combine(c.VolumeDir(1), "blobs"), "k*", SearchOption.AllDirectories).First();
        await File.WriteAllBytesAsync(blob + ".tmp-0badf00d", RandomNumberGenerator.GetBytes(700));

        for (var i = 0; i < 3; i++)
        {
            await c.StartVolumeAsync(i);
        }
        await c.StartCoordinatorAsync();
        await c.WaitAllAliveAsync();
        // The two temp files planted above are the only explained leftovers.
        await c.AssertConvergedAsync(acked, [], explainedTmp: 2);
        Assert.False(File.Exists(blob + ".tmp-0badf00d"));
    }

    /// <summary>60 s of mixed load (1 KB to 4 MB) with random volume kills: part of the regular suite.</summary>
    [Fact]
    public Task Scenario10_Soak60sMixedLoadWithRandomVolumeKills() => SoakAsync(60, [1024, 100_000, 1024 * 1024, 4 * 1024 * 1024]);

    /// <summary>
    /// Minutes of mixed load (1 KB to 16 MB) with a volume killed and restarted every few seconds. Heavy: runs
    /// with NANOKV_HEAVY=1; NANOKV_SOAK_SECS sets the length (default 180).
    /// </summary>
    [HeavyFact]
    [Trait("Category", "Heavy")]
    public Task Scenario10_SoakMixedLoadWithRandomVolumeKills() => SoakAsync(
        int.TryParse(Environment.GetEnvironmentVariable("NANOKV_SOAK_SECS"), out var s) ? s : 180,
        [1024, 100_000, 1024 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024]);

    private static async Task SoakAsync(int seconds, int[] sizes)
    {
        const int Workers = 4;
        await using var c = await ProcessCluster.StartAsync(volumes: 4, replicas: 3);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var acked = new ConcurrentDictionary<string, byte[]>();
        var deleted = new ConcurrentDictionary<string, byte>();
        var unknown = new ConcurrentDictionary<string, byte[]>(); // failed PUT/DELETE: either outcome is allowed
        var wrongBytes = 0;
        var opsDone = 0;

        var workers = Enumerable.Range(0, Workers).Select(w => Task.Run(async () =>
        {
            var rng = new Random(w);
            for (var n = 0; !stop.IsCancellationRequested && n < 2000; n++)
            {
                Interlocked.Increment(ref opsDone);
                var roll = rng.Next(100);
                var keys = acked.Keys.ToList();
                try
                {
                    if (roll < 55 || keys.Count == 0)
                    {
                        var key = $"w{w}-{n}";
                        var data = RandomNumberGenerator.GetBytes(sizes[rng.Next(sizes.Length)]);
                        unknown[key] = data;
                        using var put = await c.Client.PutAsync($"{c.Url}/{key}", new ByteArrayContent(data));
                        if (put.StatusCode == HttpStatusCode.Created)
                        {
                            acked[key] = data;
                            unknown.TryRemove(key, out _);
                        }
                    }
                    else if (roll < 85)
                    {
                        var key = keys[rng.Next(keys.Count)];
                        using var get = await c.Client.GetAsync($"{c.Url}/{key}");
                        if (get.StatusCode == HttpStatusCode.OK && acked.TryGetValue(key, out var want)
                            && !(await get.Content.ReadAsByteArrayAsync()).AsSpan().SequenceEqual(want))
                        {
                            Interlocked.Increment(ref wrongBytes);
                        }
                    }
                    else
                    {
                        var key = keys[rng.Next(keys.Count)];
                        if (!acked.TryRemove(key, out var data))
                        {
                            continue;
                        }
                        unknown[key] = data;
                        using var del = await c.Client.DeleteAsync($"{c.Url}/{key}");
                        if (del.StatusCode == HttpStatusCode.NoContent)
                        {
                            deleted[key] = 0;
                            unknown.TryRemove(key, out _);
                        }
                    }
                }
                catch (Exception ex) when (ex is HttpRequestException or IOException or TaskCanceledException)
                {
                    // A failed request is allowed under faults; a wrong answer is not.
                }
            }
        })).ToArray();

        var chaos = Task.Run(async () =>
        {
            var rng = new Random(42);
            var kills = 0;
            while (!stop.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromSeconds(5 + rng.Next(10)), CancellationToken.None);
                var victim = rng.Next(c.Volumes.Length);
                c.KillVolume(victim);
                Assert.True(c.Volumes[victim]!.HasExited);
                kills++;
                await Task.Delay(TimeSpan.FromSeconds(2 + rng.Next(6)), CancellationToken.None);
                await c.StartVolumeAsync(victim);
            }
            return kills;
        });

        // A worker's last request may wait out a full retry time box on a killed volume, and a 2 minute client timeout.
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(seconds) + c.Client.Timeout + ProcessCluster.Slack);
        var killCount = await chaos.WaitAsync(TimeSpan.FromSeconds(30) + ProcessCluster.Slack);
        await c.WaitAllAliveAsync();
        Assert.Equal(0, wrongBytes);
        Assert.True(killCount > 0 && acked.Count > 0, $"kills {killCount}, acked {acked.Count}");
        foreach (var (key, data) in unknown)
        {
            using var get = await c.Client.GetAsync($"{c.Url}/{key}");
            Assert.True(get.StatusCode == HttpStatusCode.NotFound || (await get.Content.ReadAsByteArrayAsync()).AsSpan().SequenceEqual(data), $"{key}: {get.StatusCode}");
        }
        // Each kill can strand the temp files (data + state) of every upload in flight on the victim.
        await c.AssertConvergedAsync(acked, deleted.Keys, explainedTmp: killCount * Workers * 2);
        Console.WriteLine($"soak: {seconds}s, {opsDone} ops, {killCount} volume kills, {acked.Count} live keys, {deleted.Count} deleted, {unknown.Count} unacknowledged");
    }
}
