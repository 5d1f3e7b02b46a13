using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using NanoKv.Metadata;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Faults;

/// <summary>A DELETE acknowledged while a replica is down reaches that replica once it returns (issue 12, item 4).</summary>
public class OwedDeleteTests
{
    [Fact]
    public async Task DeleteMadeWhileAReplicaIsDownArrivesAfterItReturnsWithinTheConfiguredBound()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3);
        var key = "owed"u8.ToArray();
        (await c.Client.PutAsync($"{c.Url}/owed", new ByteArrayContent(new byte[1000]))).EnsureSuccessStatusCode();
        var stalePath = c.Volume(2).Store.BlobPath(key);
        await c.StopVolumeAsync(2, waitDown: true);

        using (var del = await c.Client.DeleteAsync($"{c.Url}/owed"))
        {
            Assert.Equal(HttpStatusCode.NoContent, del.StatusCode);
        }
        var tombVersion = c.Coordinator.Store.Get(key)!.Version;
        Assert.Equal(ObjectState.Tombstoned, c.Coordinator.Store.Get(key)!.State);
        // While the volume is down its copy is still on disk, and the coordinator owes it the delete.
        Assert.True(File.Exists(stalePath));
        Assert.Equal(1, (await c.Client.GetFromJsonAsync<JsonElement>($"{c.Url}/healthz")).GetProperty("owed_deletes").GetInt32());

        await c.StartVolumeAsync(2); // returns once the coordinator sees it alive
        // The owed-delete loop runs every 2 probe intervals; one pass makes one call (at most one attempt timeout
        // per try inside the retry time box). The bound comes from those settings, plus scheduling slack.
        var settings = c.Coordinator.Options;
        var bound = (2 * settings.Health.ProbeInterval) + settings.DataPath.RetryTimeBox + settings.DataPath.AttemptTimeout + TimeSpan.FromSeconds(5);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await TestCluster.WaitUntilAsync(
            async () => !File.Exists(stalePath)
                && (await c.Volume(2).Store.InfoAsync(key, false, CancellationToken.None)).TombstoneVersion == tombVersion
                && (await c.Client.GetFromJsonAsync<JsonElement>($"{c.Url}/healthz")).GetProperty("owed_deletes").GetInt32() == 0,
            bound,
            "the owed delete reached the returned volume");
        Console.WriteLine($"owed delete arrived {sw.ElapsedMilliseconds} ms after the volume was alive (bound {bound.TotalMilliseconds} ms)");
        using var get = await c.Client.GetAsync($"{c.Url}/owed");
        Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
    }
}
