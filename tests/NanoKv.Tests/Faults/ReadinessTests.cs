using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Faults;

/// <summary>
/// Honest readiness (issue 12, item 8): a coordinator answers only after it probed its volumes, says it is
/// not ok when it cannot place N replicas, and a cluster starved of CPU in short bursts fails no request.
/// </summary>
public class ReadinessTests
{
    [Fact]
    public async Task CoordinatorProbesBeforeTakingTrafficAndIsReadyOnlyWhenItCanPlaceN()
    {
        await using var c = await ProcessCluster.StartAsync(volumes: 3, replicas: 3, waitAlive: false);
        // The coordinator's first 200 on /healthz has just been seen: the volumes must already be known alive,
        // and the first PUT must succeed (it used to get 503 insufficient_nodes until the first probe round).
        var health = await c.Client.GetFromJsonAsync<JsonElement>($"{c.Url}/healthz");
        Assert.Equal("ok", health.GetProperty("status").GetString());
        Assert.Equal(3, health.GetProperty("alive_nodes").GetInt32());
        using (var ready = await c.Client.GetAsync($"{c.Url}/readyz"))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        }
        using (var put = await c.Client.PutAsync($"{c.Url}/first", new ByteArrayContent(RandomNumberGenerator.GetBytes(1000))))
        {
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        }

        // One of three volumes gone with N = 3: not ready (503 naming the shortfall), health "degraded".
        c.KillVolume(2);
        await TestCluster.WaitUntilAsync(
            async () =>
            {
                using var r = await c.Client.GetAsync($"{c.Url}/readyz");
                return r.StatusCode == HttpStatusCode.ServiceUnavailable;
            },
            ProcessCluster.StatusChangeBound,
            "readyz 503 once a volume is down");
        using (var notReady = await c.Client.GetAsync($"{c.Url}/readyz"))
        {
            using var doc = JsonDocument.Parse(await notReady.Content.ReadAsStringAsync());
            Assert.Equal(ApiError.Codes.InsufficientNodes, doc.RootElement.GetProperty("error").GetString());
        }
        health = await c.Client.GetFromJsonAsync<JsonElement>($"{c.Url}/healthz");
        Assert.Equal("degraded", health.GetProperty("status").GetString());

        await c.StartVolumeAsync(2);
        await TestCluster.WaitUntilAsync(
            async () =>
            {
                using var r = await c.Client.GetAsync($"{c.Url}/readyz");
                return r.StatusCode == HttpStatusCode.OK;
            },
            ProcessCluster.StatusChangeBound,
            "readyz 200 once the volume is back");
        Assert.Equal("ok", (await c.Client.GetFromJsonAsync<JsonElement>($"{c.Url}/healthz")).GetProperty("status").GetString());
    }

    /// <summary>
    /// Every process (volumes and coordinator) is frozen with SIGSTOP for bursts well under the suspect
    /// threshold, like a starved CPU or a long GC pause. Late answers are not failures: a steady stream of
    /// PUT+GET must see zero errors and no volume may be declared down.
    /// </summary>
    [Fact]
    public async Task CpuStarvationInBurstsShorterThanTheDownThresholdFailsNoRequest()
    {
        await using var c = await ProcessCluster.StartAsync(volumes: 3, replicas: 2);
        var maxBurst = ProcessCluster.SuspectAfter / 2;
        Assert.True(maxBurst < ProcessCluster.DownAfter && maxBurst < ProcessCluster.AttemptTimeout);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var failures = new ConcurrentQueue<string>();
        var ok = 0;
        var workers = Enumerable.Range(0, 2).Select(w => Task.Run(async () =>
        {
            for (var n = 0; !stop.IsCancellationRequested && n < 5000; n++)
            {
                var key = $"w{w}-{n}";
                var data = RandomNumberGenerator.GetBytes(64 * 1024);
                try
                {
                    using var put = await c.Client.PutAsync($"{c.Url}/{key}", new ByteArrayContent(data));
                    if (put.StatusCode != HttpStatusCode.Created)
                    {
                        failures.Enqueue($"PUT {key}: {(int)put.StatusCode} {await put.Content.ReadAsStringAsync()}");
                        continue;
                    }
                    var got = await c.Client.GetByteArrayAsync($"{c.Url}/{key}");
                    if (!got.AsSpan().SequenceEqual(data))
                    {
                        failures.Enqueue($"GET {key}: wrong bytes");
                        continue;
                    }
                    Interlocked.Increment(ref ok);
                }
                catch (HttpRequestException ex)
                {
                    failures.Enqueue($"{key}: {ex.Message}");
                }
            }
        })).ToArray();

        var stops = 0;
        var rng = new Random(7);
        var procs = c.Volumes.Append(c.Coordinator).Select(p => p!).ToArray();
        var downSeen = new List<string>();
        while (!stop.IsCancellationRequested)
        {
            var victim = procs[rng.Next(procs.Length)];
            ProcessCluster.Signal(victim, "STOP");
            try
            {
                // Proof the fault fired: the kernel reports the process stopped.
                await TestCluster.WaitUntilAsync(() => ProcessCluster.ProcState(victim) == 'T', TimeSpan.FromSeconds(5), "process stopped");
                stops++;
                await Task.Delay(TimeSpan.FromMilliseconds(rng.Next(100, (int)maxBurst.TotalMilliseconds)), CancellationToken.None);
            }
            finally
            {
                ProcessCluster.Signal(victim, "CONT");
            }
            await Task.Delay(TimeSpan.FromMilliseconds(rng.Next(100, 400)), CancellationToken.None);
            for (var i = 0; i < c.Volumes.Length; i++)
            {
                if (await c.StatusOfAsync(i) == "down")
                {
                    downSeen.Add($"vol{i}");
                }
            }
        }
        await Task.WhenAll(workers).WaitAsync(ProcessCluster.AttemptTimeout + ProcessCluster.RetryTimeBox + ProcessCluster.Slack);
        Console.WriteLine($"cpu starvation: {stops} SIGSTOP bursts of at most {maxBurst.TotalMilliseconds} ms, {ok} PUT+GET pairs, {failures.Count} failures");
        Assert.True(stops >= 10, $"only {stops} bursts");
        Assert.True(ok > 0);
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(20)));
        Assert.True(downSeen.Count == 0, $"declared down while only late: {string.Join(", ", downSeen)}");
    }
}
