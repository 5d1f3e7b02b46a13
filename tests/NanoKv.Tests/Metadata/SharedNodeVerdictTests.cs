using System.Diagnostics;
using NanoKv.Coordinator;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Metadata;

/// <summary>
/// One health verdict per node in the shared metadata: coordinator B, which probes only once at start and gets
/// no heartbeats, keeps the volumes alive on A's verdicts, learns a volume that joined through A, and sees a
/// volume A saw die as down within a sync interval.
/// </summary>
public sealed class SharedNodeVerdictTests(PostgresFixture pg) : IClassFixture<PostgresFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task CoordinatorBAdoptsTheVerdictsCoordinatorAPublishes()
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.CreateDatabaseAsync());
        var a = c.Coordinator;
        await TestCluster.WaitUntilAsync(() => a.Store.Nodes().Count(n => n.Verdict == NanoKv.Metadata.NodeVerdict.Alive) == 3, Timeout, "A published three alive verdicts");
        await using var b = CoordinatorServer.Create(a.Options with
        {
            Port = 0,
            DbDir = Path.Combine(c.Root, "index-b"),
            Volumes = [],
            Health = TestCluster.FastHealth with { ProbeInterval = TimeSpan.FromHours(1) }, // B observes nothing itself after its start
        });
        await b.StartAsync().WaitAsync(Timeout);
        var started = Stopwatch.StartNew();

        // Long past B's own DownAfter, the volumes are alive for B on A's verdicts.
        // A's verdicts refresh every 200 ms but age into suspect after 1 s, so a stalled A under CI load can
        // make them briefly suspect for B too: await B's count, do not sample it once.
        await TestCluster.WaitUntilAsync(() => started.Elapsed > TestCluster.FastHealth.DownAfter * 2, Timeout, "B's own observations aged");
        await TestCluster.WaitUntilAsync(() => b.Nodes.AliveIds().Count == 3, Timeout, "B sees three alive on A's verdicts");
        Assert.All(b.Nodes.Views(), v => Assert.Equal(a.Options.DataPath.CoordinatorId, v.VerdictBy));

        // A volume that joins through A (heartbeats to A only) becomes a member for B, alive.
        var added = await c.AddVolumeAsync();
        var addedId = c.Volume(added).NodeId;
        await TestCluster.WaitUntilAsync(() => b.Nodes.StatusOf(addedId) == NodeStatus.Alive, Timeout, "B learned the volume that joined through A");

        // A sees volume 0 die; B adopts the verdict within a sync interval (plus scheduling slack).
        var dead = c.Volume(0).NodeId;
        await c.StopVolumeAsync(0, waitDown: true);
        var aSawIt = Stopwatch.StartNew();
        var bound = b.Nodes.SyncInterval + a.Nodes.SyncInterval + TimeSpan.FromSeconds(10);
        await TestCluster.WaitUntilAsync(() => b.Nodes.StatusOf(dead) == NodeStatus.Down, bound, "B sees the volume A saw die as down");
        Assert.True(aSawIt.Elapsed <= bound, $"{aSawIt.Elapsed}");
        Assert.DoesNotContain(dead, b.Nodes.AliveIds());
        await TestCluster.WaitUntilAsync(() => b.Nodes.AliveIds().Count == 3, Timeout, "B sees the other three alive");
        Assert.Equal(a.Options.DataPath.CoordinatorId, b.Nodes.Views().Single(v => v.NodeId == dead).VerdictBy);
    }

    /// <summary>RocksDB keeps its single-coordinator behaviour: no verdicts are written.</summary>
    [Fact]
    public async Task RocksDbPublishesNoVerdicts()
    {
        await using var c = await TestCluster.StartAsync();
        await TestCluster.WaitUntilAsync(() => c.Coordinator.Nodes.AliveIds().Count == 3, Timeout, "volumes alive");
        await TestCluster.WaitUntilAsync(() => c.Coordinator.Store.Nodes().Count == 3, Timeout, "volumes registered");
        await Task.Delay(c.Coordinator.Nodes.SyncInterval * 3);
        Assert.All(c.Coordinator.Store.Nodes(), n => Assert.Null(n.Verdict));
        Assert.All(c.Coordinator.Nodes.Views(), v => Assert.Null(v.VerdictBy));
    }
}
