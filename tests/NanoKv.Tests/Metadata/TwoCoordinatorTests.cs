using System.Net;
using System.Security.Cryptography;
using System.Text;
using NanoKv.Coordinator;
using NanoKv.Coordinator.Core;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Metadata;

/// <summary>
/// Two coordinators serving the same volumes over one PostgreSQL: any coordinator accepts any request, and
/// the metadata's compare-and-swap (not an in-process lock) decides races between them.
/// </summary>
public sealed class TwoCoordinatorTests(PostgresFixture pg) : IClassFixture<PostgresFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task APutThroughOneIsReadThroughTheOtherAndConcurrentWritesHaveOneWinner()
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.CreateDatabaseAsync());
        await using var b = CoordinatorServer.Create(c.Coordinator.Options with { Port = 0, DbDir = Path.Combine(c.Root, "index-b") });
        await b.StartAsync().WaitAsync(Timeout);
        await TestCluster.WaitUntilAsync(() => b.Nodes.AliveIds().Count == 3, Timeout, "coordinator B sees the volumes alive");

        var data = RandomNumberGenerator.GetBytes(200_000);
        using (var put = await c.Client.PutAsync($"{c.Url}/shared", new ByteArrayContent(data)).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        }
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{b.Url}/shared").WaitAsync(Timeout));

        // The same key through A and B at once, several times: exactly one 201 each round, the other 409.
        for (var round = 0; round < 5; round++)
        {
            var key = $"race-{round}";
            var bodies = new[] { RandomNumberGenerator.GetBytes(100_000), RandomNumberGenerator.GetBytes(100_000) };
            var answers = await Task.WhenAll(
                c.Client.PutAsync($"{c.Url}/{key}", new ByteArrayContent(bodies[0])),
                c.Client.PutAsync($"{b.Url}/{key}", new ByteArrayContent(bodies[1]))).WaitAsync(Timeout);
            var statuses = string.Join(", ", answers.Select(a => (int)a.StatusCode));
            Assert.True(answers.Count(a => a.StatusCode == HttpStatusCode.Created) == 1, $"round {round}: {statuses}");
            // The loser hears 409; on a starved machine it may hear 503 before it even reserves the key.
            Assert.All(answers.Where(a => a.StatusCode != HttpStatusCode.Created), a => Assert.Contains(a.StatusCode, new[] { HttpStatusCode.Conflict, HttpStatusCode.ServiceUnavailable }));
            var winner = bodies[Array.FindIndex(answers, a => a.StatusCode == HttpStatusCode.Created)];
            Assert.Equal(winner, await c.Client.GetByteArrayAsync($"{b.Url}/{key}").WaitAsync(Timeout));
            Assert.Equal(winner, await c.Client.GetByteArrayAsync($"{c.Url}/{key}").WaitAsync(Timeout));
            foreach (var a in answers)
            {
                a.Dispose();
            }
        }

        // A DELETE through B is seen by A.
        (await c.Client.DeleteAsync($"{b.Url}/shared").WaitAsync(Timeout)).EnsureSuccessStatusCode();
        using var gone = await c.Client.GetAsync($"{c.Url}/shared").WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
    }

    [Fact]
    public async Task ConcurrentS3ConditionalWritesThroughTwoCoordinatorsHaveOneWinner()
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.CreateDatabaseAsync());
        await using var b = CoordinatorServer.Create(c.Coordinator.Options with { Port = 0, DbDir = Path.Combine(c.Root, "index-b") });
        await b.StartAsync().WaitAsync(Timeout);
        await TestCluster.WaitUntilAsync(() => b.Nodes.AliveIds().Count == 3, Timeout, "coordinator B sees the volumes alive");
        Assert.True((await c.Coordinator.Objects.CreateBucketAsync("shared", "alice")).Ok);
        Assert.Equal(StoreErrorKind.BucketOwnedByYou, (await b.Objects.CreateBucketAsync("shared", "alice")).Error!.Kind);

        var stores = new[] { c.Coordinator.Objects, b.Objects, c.Coordinator.Objects, b.Objects };
        var results = await Task.WhenAll(stores.Select((s, i) =>
        {
            var body = RandomNumberGenerator.GetBytes(50_000);
            return s.PutObjectAsync(new ObjectPut("shared", Encoding.UTF8.GetBytes("once"), new MemoryStream(body), body.Length)
            {
                Condition = WriteCondition.IfNoneMatch,
                Etag = () => Convert.ToHexStringLower(MD5.HashData(body)),
            }, CancellationToken.None);
        })).WaitAsync(Timeout);
        Assert.Single(results, r => r.Ok);
        Assert.All(results.Where(r => !r.Ok), r => Assert.Equal(StoreErrorKind.PreconditionFailed, r.Error!.Kind));
        Assert.Equal(results.Single(r => r.Ok).Value!.Etag, b.Objects.HeadObject("shared", Encoding.UTF8.GetBytes("once"))!.Etag);
    }
}
