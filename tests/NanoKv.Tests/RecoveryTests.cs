using System.Net;
using System.Security.Cryptography;
using NanoKv.Core;
using NanoKv.Metadata;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests;

/// <summary>
/// A coordinator that crashed mid-write leaves pending metadata and uploads on volumes. These tests build
/// exactly that state (coordinator stopped, index edited as the crashed process left it) and check that
/// the next start resolves it: roll forward only when every replica committed, otherwise roll back.
/// </summary>
public class RecoveryTests
{
    private sealed record Crash(byte[] Key, byte[] Data, ObjectMeta Meta);

    /// <summary>Prepares and uploads on every replica, commits on the first `commits` of them, then "crashes".</summary>
    private static async Task<Crash> CrashMidWriteAsync(TestCluster c, string name, int commits, bool uploaded = true)
    {
        var key = System.Text.Encoding.UTF8.GetBytes(name);
        var data = RandomNumberGenerator.GetBytes(100_000);
        var replicas = Placement.Choose(key, c.Volumes.Select(v => v!.NodeId), 3);
        var meta = new ObjectMeta
        {
            State = ObjectState.Pending,
            Replicas = replicas,
            UploadId = Guid.NewGuid().ToString("N"),
            Version = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000,
            Size = uploaded ? data.Length : 0,
            Etag = uploaded ? Blake3.Hasher.Hash(data).ToString() : "",
        };
        var client = new VolumeClient(c.Client, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2));
        for (var i = 0; i < replicas.Count; i++)
        {
            var url = c.VolumeById(replicas[i]).Url;
            Assert.True((await client.PrepareAsync(url, key, meta.UploadId, data.Length, default)).Ok);
            if (uploaded)
            {
                Assert.True((await client.UploadAsync(url, meta.UploadId, new ByteArrayContent(data), default)).Ok);
            }
            if (i < commits)
            {
                Assert.True((await client.CommitAsync(url, key, meta.UploadId, meta.Version, default)).Ok);
            }
        }
        await c.StopCoordinatorAsync();
        using (var store = MetaStore.Open(c.Coordinator.Options.DbDir))
        {
            store.Put(key, meta);
        }
        return new Crash(key, data, meta);
    }

    [Fact]
    public async Task PendingWriteCommittedEverywhereRollsForward()
    {
        await using var c = await TestCluster.StartAsync();
        var crash = await CrashMidWriteAsync(c, "all-committed", commits: 3);
        await c.StartCoordinatorAsync();
        await TestCluster.WaitUntilAsync(() => c.Coordinator.Store.PendingKeys().Count == 0, TimeSpan.FromSeconds(15), "recovery");

        Assert.Equal(ObjectState.Committed, c.Coordinator.Store.Get(crash.Key)!.State);
        Assert.Equal(crash.Data, await c.Client.GetByteArrayAsync($"{c.Url}/all-committed"));
    }

    [Theory]
    [InlineData(1, true)]
    [InlineData(0, true)]
    [InlineData(0, false)]
    public async Task PendingWriteNotCommittedEverywhereRollsBack(int commits, bool uploaded)
    {
        await using var c = await TestCluster.StartAsync();
        var crash = await CrashMidWriteAsync(c, $"partial-{commits}-{uploaded}", commits, uploaded);
        await c.StartCoordinatorAsync();
        // The rollback's deletes follow its metadata change: wait for both rather than race the fan-out.
        await TestCluster.WaitUntilAsync(
            () => c.Coordinator.Store.PendingKeys().Count == 0 && c.Volumes.All(v => v is null || !File.Exists(v.Store.BlobPath(crash.Key))),
            TimeSpan.FromSeconds(15),
            "recovery");

        var meta = c.Coordinator.Store.Get(crash.Key);
        Assert.True(meta is null || meta.State == ObjectState.Tombstoned);
        await DataPathTests.AssertNothingVisible(c, crash.Key);
        // The key is free again.
        using var put = await c.Client.PutAsync($"{c.Url}/partial-{commits}-{uploaded}", new ByteArrayContent([9]));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
    }

    [Fact]
    public async Task PendingWriteWaitsForAnUnreachableReplica()
    {
        await using var c = await TestCluster.StartAsync();
        var crash = await CrashMidWriteAsync(c, "waits", commits: 3);
        var missing = c.IndexOf(crash.Meta.Replicas[2]);
        await c.StopVolumeAsync(missing);
        await c.StartCoordinatorAsync();
        // Cannot decide without that replica: it stays pending (and invisible) instead of guessing.
        using (var get = await c.Client.GetAsync($"{c.Url}/waits"))
        {
            Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        }
        Assert.Single(c.Coordinator.Store.PendingKeys());
        await c.StartVolumeAsync(missing);
        await TestCluster.WaitUntilAsync(() => c.Coordinator.Store.PendingKeys().Count == 0, TimeSpan.FromSeconds(15), "recovery");
        Assert.Equal(crash.Data, await c.Client.GetByteArrayAsync($"{c.Url}/waits"));
    }
}
