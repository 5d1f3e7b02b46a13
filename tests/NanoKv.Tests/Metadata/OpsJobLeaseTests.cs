using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using NanoKv.Coordinator;
using NanoKv.Ops;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Metadata;

/// <summary>
/// Live ops jobs that change the cluster run once cluster-wide: a job lease in the shared metadata makes a
/// second repair/rebalance/gc (through another coordinator, or the same one) a 409 naming the holder.
/// </summary>
public sealed class OpsJobLeaseTests(PostgresFixture pg) : IClassFixture<PostgresFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task ASecondJobIsRefusedNamingTheHolderUntilTheFirstEnds()
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.CreateDatabaseAsync());
        await using var b = CoordinatorServer.Create(c.Coordinator.Options with { Port = 0, DbDir = Path.Combine(c.Root, "index-b") });
        await b.StartAsync().WaitAsync(Timeout);
        await TestCluster.WaitUntilAsync(() => b.Nodes.AliveIds().Count == 3, Timeout, "coordinator B sees the volumes alive");
        for (var i = 0; i < 5; i++)
        {
            (await c.Client.PutAsync($"{c.Url}/k{i}", new ByteArrayContent(new byte[1000]))).EnsureSuccessStatusCode();
        }

        // Volume 0's listing stalls, so A's repair is still running while the others try.
        await DataPathTests.Arm(c, 0, new { op = "list", mode = "stall", count = 1, stall_ms = 4000 });
        var first = await StartJobAsync(c, c.Url, "repair");
        Assert.Equal(HttpStatusCode.Accepted, first.Status);
        var firstId = first.Body.GetProperty("id").GetString()!;

        foreach (var (url, command) in new[] { (b.Url, "repair"), (b.Url, "gc"), (b.Url, "rebalance"), (c.Url, "repair") })
        {
            var refused = await StartJobAsync(c, url, command);
            Assert.True(refused.Status == HttpStatusCode.Conflict, $"{command} via {url}: {(int)refused.Status} {refused.Body}");
            Assert.Equal("job_running", refused.Body.GetProperty("error").GetString());
            var detail = refused.Body.GetProperty("detail").GetString()!;
            Assert.Contains(firstId, detail, StringComparison.Ordinal);
            Assert.Contains(c.Coordinator.Options.DataPath.CoordinatorId, detail, StringComparison.Ordinal);
            Assert.Contains(c.Url, detail, StringComparison.Ordinal);
        }
        // The ops CLI reports the refusal with the holder.
        var cli = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            OpsCli.RunLiveAsync(b.Url, new OpsOptions { Command = "gc" }, null, quiet: true, CancellationToken.None));
        Assert.Contains(firstId, cli.Message, StringComparison.Ordinal);
        // Read-only jobs are not exclusive.
        var verify = await StartJobAsync(c, b.Url, "verify");
        Assert.Equal(HttpStatusCode.Accepted, verify.Status);

        Assert.Equal("running", await JobStateAsync(c, c.Url, firstId));
        await TestCluster.WaitUntilAsync(async () => await JobStateAsync(c, c.Url, firstId) == "done", Timeout, "A's repair finished");
        Assert.True(c.Volume(0).Faults.Hits("list") >= 1, "the stall held A's repair");

        // Released: B may run one now.
        var second = await StartJobAsync(c, b.Url, "repair");
        Assert.True(second.Status == HttpStatusCode.Accepted, $"{(int)second.Status} {second.Body}");
        var secondId = second.Body.GetProperty("id").GetString()!;
        await TestCluster.WaitUntilAsync(async () => await JobStateAsync(c, b.Url, secondId) == "done", Timeout, "B's repair finished");
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> StartJobAsync(TestCluster c, string url, string command)
    {
        using var resp = await c.Client.PostAsJsonAsync($"{url}/admin/jobs", new OpsOptions { Command = command });
        return (resp.StatusCode, await resp.Content.ReadFromJsonAsync<JsonElement>());
    }

    private static async Task<string> JobStateAsync(TestCluster c, string url, string id) =>
        (await c.Client.GetFromJsonAsync<JsonElement>($"{url}/admin/jobs/{id}")).GetProperty("state").GetString()!;
}
