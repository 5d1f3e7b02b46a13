using System.Net;
using System.Security.Cryptography;
using NanoKv.Ops;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Faults;

/// <summary>
/// Versions come from the coordinator's clock (issue 12, item 9). Restarted with its clock an hour back
/// (`faketime`), later writes and deletes must still win, a tombstone must still beat an older copy in
/// `rebuild`, and gc's tombstone TTL must not purge a fresh tombstone.
/// </summary>
public class ClockSkewTests
{
    [Fact]
    public async Task CoordinatorRestartedAnHourBackKeepsLaterWritesAndDeletesWinning()
    {
        Assert.True(File.Exists("/usr/bin/faketime"), "faketime is required (.ci/run installs it)");
        await using var c = await ProcessCluster.StartAsync(volumes: 3, replicas: 3);
        var before = new Dictionary<string, byte[]>();
        foreach (var key in new[] { "a", "b", "c" })
        {
            before[key] = RandomNumberGenerator.GetBytes(20_000);
            (await c.Client.PutAsync($"{c.Url}/{key}", new ByteArrayContent(before[key]))).EnsureSuccessStatusCode();
        }

        // A tombstone made with the true clock, which the skewed coordinator sees an hour in its future.
        Assert.Equal(HttpStatusCode.Created, (await c.Client.PutAsync($"{c.Url}/d", new ByteArrayContent(new byte[100]))).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await c.Client.DeleteAsync($"{c.Url}/d")).StatusCode);

        c.KillCoordinator();
        await c.StartCoordinatorAsync(
            new Dictionary<string, string> { ["FAKETIME_DONT_FAKE_MONOTONIC"] = "1" },
            ["faketime", "-f", "-1h"]);
        await c.WaitAllAliveAsync();
        // Proof the skew took: the coordinator's own Date header is an hour behind ours.
        using (var h = await c.Client.GetAsync($"{c.Url}/healthz"))
        {
            var lag = DateTimeOffset.UtcNow - h.Headers.Date!.Value;
            Assert.True(lag > TimeSpan.FromMinutes(55) && lag < TimeSpan.FromMinutes(65), $"coordinator clock lags by {lag}");
        }

        // Reads go through the coordinator (?proxy=1) while its clock is skewed: a redirect carries a volume URL
        // presigned with the coordinator's clock (5 minute lifetime), which a volume an hour ahead refuses (401).
        // Found by this test; see the README's Guarantees.
        // A delete and a rewrite after the skew win over the write made before it.
        Assert.Equal(HttpStatusCode.NoContent, (await c.Client.DeleteAsync($"{c.Url}/a")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await c.Client.GetAsync($"{c.Url}/a?proxy=1")).StatusCode);
        var a2 = RandomNumberGenerator.GetBytes(30_000);
        Assert.Equal(HttpStatusCode.Created, (await c.Client.PutAsync($"{c.Url}/a", new ByteArrayContent(a2))).StatusCode);
        Assert.Equal(a2, await c.Client.GetByteArrayAsync($"{c.Url}/a?proxy=1"));
        Assert.Equal(HttpStatusCode.NoContent, (await c.Client.DeleteAsync($"{c.Url}/b")).StatusCode);

        // gc on the skewed coordinator with a 10 minute TTL: b's tombstone (just made) and d's (made before the
        // skew, so "in the future" for this clock) are both kept; neither is purged early.
        var gc = await OpsCli.RunLiveAsync(c.Url, new OpsOptions { Command = "gc", TombstoneTtlSecs = 600 }, c.Secret, quiet: true, CancellationToken.None);
        Assert.True(gc.Count("tombstones_expired") == 0 && gc.Count("tombstones_kept") == 2, string.Join(", ", gc.Counts.Select(kv => $"{kv.Key}={kv.Value}")));

        // An older copy survives on a volume that missed the delete; then the index is lost and rebuilt.
        c.KillVolume(2);
        await TestCluster.WaitUntilAsync(async () => await c.StatusOfAsync(2) == "down", ProcessCluster.StatusChangeBound, "vol2 down");
        Assert.Equal(HttpStatusCode.NoContent, (await c.Client.DeleteAsync($"{c.Url}/c")).StatusCode);
        c.KillCoordinator();
        Directory.Delete(c.IndexDir, recursive: true);
        await c.StartVolumeAsync(2);
        Assert.True(Directory.EnumerateFiles(Path.Combine(c.VolumeDir(2), "blobs"), "c", SearchOption.AllDirectories).Any(), "the stale copy of c");
        var rebuild = await OpsCli.RunOfflineAsync(c.IndexDir, new OpsOptions
        {
            Command = "rebuild",
            Nodes = Enumerable.Range(0, 3).Select(i => $"vol{i}={c.VolumeUrl(i)}").ToList(),
        }, c.Secret, null, quiet: true, CancellationToken.None);
        Assert.True(rebuild.Count("errors") == 0, string.Join("\n", rebuild.Details));

        await c.StartCoordinatorAsync();
        await c.WaitAllAliveAsync();
        Assert.Equal(a2, await c.Client.GetByteArrayAsync($"{c.Url}/a"));
        foreach (var gone in new[] { "b", "c", "d" })
        {
            using var get = await c.Client.GetAsync($"{c.Url}/{gone}");
            Assert.True(get.StatusCode == HttpStatusCode.NotFound, $"{gone} came back after rebuild: {(int)get.StatusCode}");
        }
        var verify = await c.OpsAsync("verify", deep: true);
        Assert.Equal(0, verify.Count("corrupted"));
        Assert.Equal(0, verify.Count("under_replicated"));
    }
}
