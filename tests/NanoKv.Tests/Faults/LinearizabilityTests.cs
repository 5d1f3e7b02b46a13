using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Faults;

/// <summary>
/// History-checked linearizability (issue 12, item 10): concurrent clients PUT/GET/DELETE a few keys while
/// volumes are killed and restarted; every call's start, end and result is recorded and the history is
/// checked against the write-once register model by <see cref="WriteOnceRegisterChecker"/>.
/// </summary>
public class LinearizabilityTests
{
    private static HistoryOp Op(OpKind kind, int value, long start, long end, OpOutcome outcome) => new("k", kind, value, start, end, outcome);

    [Fact]
    public void TheCheckerAcceptsOverlapsAndRejectsEveryBrokenPromise()
    {
        // A GET overlapping a PUT may see it or not; an unknown PUT may have taken effect.
        Assert.Null(WriteOnceRegisterChecker.Check([Op(OpKind.Put, 1, 0, 10, OpOutcome.Ok), Op(OpKind.Get, 1, 5, 6, OpOutcome.Read), Op(OpKind.Get, 0, 4, 7, OpOutcome.NotFound)]));
        Assert.Null(WriteOnceRegisterChecker.Check([Op(OpKind.Put, 1, 0, long.MaxValue, OpOutcome.Unknown), Op(OpKind.Get, 1, 5, 6, OpOutcome.Read)]));
        Assert.Null(WriteOnceRegisterChecker.Check([Op(OpKind.Put, 1, 0, long.MaxValue, OpOutcome.Unknown), Op(OpKind.Get, 0, 5, 6, OpOutcome.NotFound)]));
        // A GET sees a PUT that began after the GET ended.
        Assert.NotNull(WriteOnceRegisterChecker.Check([Op(OpKind.Get, 1, 0, 1, OpOutcome.Read), Op(OpKind.Put, 1, 2, 3, OpOutcome.Ok)]));
        // An acknowledged DELETE undone.
        Assert.NotNull(WriteOnceRegisterChecker.Check([Op(OpKind.Put, 1, 0, 1, OpOutcome.Ok), Op(OpKind.Delete, 0, 2, 3, OpOutcome.Ok), Op(OpKind.Get, 1, 4, 5, OpOutcome.Read)]));
        // Two acknowledged PUTs with no DELETE between (write-once broken).
        Assert.NotNull(WriteOnceRegisterChecker.Check([Op(OpKind.Put, 1, 0, 1, OpOutcome.Ok), Op(OpKind.Put, 2, 2, 3, OpOutcome.Ok)]));
        // An acknowledged PUT not visible to a later GET (lost write).
        Assert.NotNull(WriteOnceRegisterChecker.Check([Op(OpKind.Put, 1, 0, 1, OpOutcome.Ok), Op(OpKind.Get, 0, 2, 3, OpOutcome.NotFound)]));
        // A value read from one PUT, then from another, with no DELETE that could come between.
        Assert.NotNull(WriteOnceRegisterChecker.Check([Op(OpKind.Put, 1, 0, 1, OpOutcome.Ok), Op(OpKind.Put, 2, 0, long.MaxValue, OpOutcome.Unknown), Op(OpKind.Get, 2, 2, 3, OpOutcome.Read)]));
    }

    [Fact]
    public void AFailureNamesTheFirstCallTheModelCannotExplain()
    {
        var report = WriteOnceRegisterChecker.Check(
        [
            Op(OpKind.Put, 1, 0, 1, OpOutcome.Ok), Op(OpKind.Get, 1, 2, 3, OpOutcome.Read), Op(OpKind.Put, 2, 2, long.MaxValue, OpOutcome.Unknown),
            Op(OpKind.Get, 0, 4, 5, OpOutcome.NotFound), Op(OpKind.Get, 1, 6, 7, OpOutcome.Read),
        ]);
        Assert.NotNull(report);
        Assert.StartsWith("key k: no linearization; the first call the model cannot explain is Get 0 [4, 5] NotFound", report);
        Assert.Contains("> Get 0 [4, 5] NotFound", report);
        Assert.Contains("  Put 2 [2, ∞] Unknown", report);
    }

    [Fact]
    public async Task ConcurrentClientsOnFewKeysWithVolumeKillsAreLinearizable()
    {
        await using var c = await ProcessCluster.StartAsync(volumes: 4, replicas: 2);
        string[] keys = ["lin-0", "lin-1", "lin-2"];
        var history = new ConcurrentQueue<HistoryOp>();
        var nextValue = 0;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(20));

        var clients = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            var rng = new Random(100 + w);
            for (var n = 0; !stop.IsCancellationRequested && n < 1000; n++)
            {
                var key = keys[rng.Next(keys.Length)];
                var roll = rng.Next(100);
                var kind = roll < 40 ? OpKind.Put : roll < 80 ? OpKind.Get : OpKind.Delete;
                var value = kind == OpKind.Put ? Interlocked.Increment(ref nextValue) : 0;
                var start = Stopwatch.GetTimestamp();
                try
                {
                    switch (kind)
                    {
                        case OpKind.Put:
                            using (var put = await c.Client.PutAsync($"{c.Url}/{key}", new ByteArrayContent(Body(value))))
                            {
                                var outcome = put.StatusCode == HttpStatusCode.Created ? OpOutcome.Ok : await ConflictAsync(put);
                                if (outcome is OpOutcome o)
                                {
                                    history.Enqueue(new HistoryOp(key, kind, value, start, o == OpOutcome.Unknown ? long.MaxValue : Stopwatch.GetTimestamp(), o));
                                }
                            }
                            break;
                        case OpKind.Get:
                            using (var get = await c.Client.GetAsync($"{c.Url}/{key}"))
                            {
                                if (get.StatusCode == HttpStatusCode.OK)
                                {
                                    var read = ValueOf(await get.Content.ReadAsByteArrayAsync());
                                    history.Enqueue(new HistoryOp(key, kind, read, start, Stopwatch.GetTimestamp(), OpOutcome.Read));
                                }
                                else if (get.StatusCode == HttpStatusCode.NotFound)
                                {
                                    history.Enqueue(new HistoryOp(key, kind, 0, start, Stopwatch.GetTimestamp(), OpOutcome.NotFound));
                                }
                            }
                            break;
                        default:
                            using (var del = await c.Client.DeleteAsync($"{c.Url}/{key}"))
                            {
                                var outcome = del.StatusCode == HttpStatusCode.NoContent ? OpOutcome.Ok : await ConflictAsync(del);
                                if (outcome is OpOutcome o)
                                {
                                    history.Enqueue(new HistoryOp(key, kind, 0, start, o == OpOutcome.Unknown ? long.MaxValue : Stopwatch.GetTimestamp(), o));
                                }
                            }
                            break;
                    }
                }
                catch (Exception ex) when (ex is HttpRequestException or IOException or TaskCanceledException)
                {
                    // No answer: a PUT or DELETE may still take effect, at any time after it began; a GET saw nothing.
                    if (kind != OpKind.Get)
                    {
                        history.Enqueue(new HistoryOp(key, kind, value, start, long.MaxValue, OpOutcome.Unknown));
                    }
                }
            }
        })).ToArray();

        var kills = 0;
        var rng = new Random(9);
        while (!stop.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(rng.Next(2000, 4000)), CancellationToken.None);
            var victim = rng.Next(c.Volumes.Length);
            c.KillVolume(victim);
            Assert.True(c.Volumes[victim]!.HasExited);
            kills++;
            await Task.Delay(TimeSpan.FromMilliseconds(rng.Next(500, 1500)), CancellationToken.None);
            await c.StartVolumeAsync(victim);
        }
        await Task.WhenAll(clients).WaitAsync(c.Client.Timeout + ProcessCluster.Slack);

        var ops = history.ToList();
        var verdict = WriteOnceRegisterChecker.Check(ops);
        Console.WriteLine($"linearizability: {ops.Count} operations checked on {keys.Length} keys ({ops.Count(o => o.Outcome == OpOutcome.Unknown)} with unknown outcome, "
            + $"{ops.Count(o => o.Kind == OpKind.Get)} reads), {kills} volume kills: {(verdict is null ? "linearizable" : "NOT linearizable")}");
        Assert.True(kills > 0);
        Assert.True(ops.Count(o => o.Outcome == OpOutcome.Ok && o.Kind == OpKind.Put) > 0 && ops.Any(o => o.Outcome == OpOutcome.Read));
        Assert.True(verdict is null, verdict); // the whole explanation, not a truncated value
    }

    /// <summary>"v00000042xxxx…": the PUT op id, readable back from a GET body.</summary>
    private static byte[] Body(int value) => Encoding.ASCII.GetBytes($"v{value:D8}".PadRight(4096, 'x'));

    private static int ValueOf(byte[] body) => int.Parse(Encoding.ASCII.GetString(body, 1, 8), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>409 key_exists is a definite "the key holds a value"; write_in_progress is a refusal with no effect (null); anything else is unknown.</summary>
    private static async Task<OpOutcome?> ConflictAsync(HttpResponseMessage resp)
    {
        if (resp.StatusCode != HttpStatusCode.Conflict)
        {
            return OpOutcome.Unknown;
        }
        using var doc = JsonDocument.Parse(await resp.Content.ReadAsStringAsync());
        return doc.RootElement.GetProperty("error").GetString() switch
        {
            ApiError.Codes.KeyExists => OpOutcome.Exists,
            ApiError.Codes.WriteInProgress => null,
            _ => OpOutcome.Unknown,
        };
    }
}
