using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Faults;

/// <summary>
/// Real processes killed at named instants (NANOKV_CRASH_AT, see CrashPoints): no hand-built post-crash files.
/// The coordinator's crash point is driven by ProcessFaultTests.Scenario02_KillCoordinatorAfterEveryReplicaCommittedRollsForward.
/// </summary>
public class CrashPointTests
{
    [Fact]
    public async Task VolumeKilledBetweenRenameAndCommitMarkerHoldsACommittedCopyThatTheRollbackDeletes()
    {
        await using var c = await ProcessCluster.StartAsync(volumes: 3, replicas: 3);
        var before = RandomNumberGenerator.GetBytes(10_000);
        (await c.Client.PutAsync($"{c.Url}/before", new ByteArrayContent(before))).EnsureSuccessStatusCode();
        c.KillVolume(0);
        await c.StartVolumeAsync(0, new Dictionary<string, string> { ["NANOKV_CRASH_AT"] = CrashPoint.VolumeAfterRename });
        await c.WaitAllAliveAsync();

        // Volume 0 dies inside its commit, after the rename: the other replicas committed, so the coordinator
        // must roll the write back and the client must not hear yes.
        using (var put = await c.Client.PutAsync($"{c.Url}/crashed", new ByteArrayContent(RandomNumberGenerator.GetBytes(300_000))))
        {
            Assert.False(put.IsSuccessStatusCode, $"{(int)put.StatusCode}");
        }
        await c.Volumes[0]!.WaitForExitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains($"crash point {CrashPoint.VolumeAfterRename}", c.Volumes[0]!.Output, StringComparison.Ordinal);

        // The state the kill left: the blob renamed into blobs/ (its upload state travelled with it as an xattr,
        // removed before the rename), nothing in tmp/, nothing in memory once restarted.
        var tmp = Path.Combine(c.VolumeDir(0), "tmp");
        Assert.Empty(Directory.GetFiles(tmp, "*.data"));
        Assert.Empty(Directory.GetFiles(tmp, "*.committed"));
        Assert.True(Directory.EnumerateFiles(Path.Combine(c.VolumeDir(0), "blobs"), "crashed", SearchOption.AllDirectories).Any());

        await c.StartVolumeAsync(0);
        await c.WaitAllAliveAsync();
        // The copy counts as committed after restart (VolumeApiTests covers status/abort), and the rollback's
        // owed delete removes it once the volume is back.
        await TestCluster.WaitUntilAsync(
            () => !Directory.EnumerateFiles(Path.Combine(c.VolumeDir(0), "blobs"), "crashed", SearchOption.AllDirectories).Any(),
            ProcessCluster.StatusChangeBound + ProcessCluster.RetryTimeBox,
            "the rolled-back copy deleted on the returned volume");
        using var get = await c.Client.GetAsync($"{c.Url}/crashed");
        Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        await c.AssertConvergedAsync(new Dictionary<string, byte[]> { ["before"] = before }, ["crashed"], explainedTmp: 0);
    }
}
