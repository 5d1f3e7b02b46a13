using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using NanoKv.Metadata;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Metadata;

/// <summary>The native data path through a coordinator on each metadata backend (real volumes, real PostgreSQL).</summary>
public sealed class MetaBackendDataPathTests(PostgresFixture pg) : IClassFixture<PostgresFixture>
{
    public static TheoryData<MetaBackendKind> Backends => MetaLocation.All;

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task PutGetListDelete(MetaBackendKind kind)
    {
        var meta = kind == MetaBackendKind.Postgres ? await pg.CreateDatabaseAsync() : null;
        await using var c = await TestCluster.StartAsync(meta: meta);
        Assert.Equal(kind == MetaBackendKind.Postgres ? "postgres" : "rocksdb", c.Coordinator.Store.Backend);
        var data = RandomNumberGenerator.GetBytes(300_000);
        foreach (var key in new[] { "dir%2Fb", "dir%2Fa", "other" })
        {
            using var put = await c.Client.PutAsync($"{c.Url}/{key}", new ByteArrayContent(data));
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        }
        using (var conflict = await c.Client.PutAsync($"{c.Url}/other", new ByteArrayContent(data)))
        {
            Assert.False(conflict.IsSuccessStatusCode); // the native API does not overwrite
        }
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/dir%2Fa"));

        using var list = await c.Client.GetAsync($"{c.Url}/?list&prefix=dir%2F");
        using var doc = JsonDocument.Parse(await list.Content.ReadAsStringAsync());
        Assert.Equal(["dir/a", "dir/b"], doc.RootElement.GetProperty("keys").EnumerateArray().Select(k => Uri.UnescapeDataString(k.GetProperty("key").GetString()!)));

        using var del = await c.Client.DeleteAsync($"{c.Url}/dir%2Fa");
        Assert.Equal(HttpStatusCode.NoContent, del.StatusCode);
        using var gone = await c.Client.GetAsync($"{c.Url}/dir%2Fa");
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        Assert.Equal(ObjectState.Committed, c.Coordinator.Store.Get("dir/b"u8)!.State);
        Assert.Empty(c.Coordinator.Store.PendingKeys());
    }

    [Fact]
    public async Task DatabaseDownIs503ThenServiceResumesByItself()
    {
        var dsn = await pg.CreateDatabaseAsync() + "?retry_ms=1000";
        await using var c = await TestCluster.StartAsync(meta: dsn);
        var data = RandomNumberGenerator.GetBytes(10_000);
        (await c.Client.PutAsync($"{c.Url}/kept", new ByteArrayContent(data))).EnsureSuccessStatusCode();

        await pg.StopAsync();
        try
        {
            using var get = await c.Client.GetAsync($"{c.Url}/kept");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, get.StatusCode);
            using var body = JsonDocument.Parse(await get.Content.ReadAsStringAsync());
            Assert.Equal("unavailable", body.RootElement.GetProperty("error").GetString());
            Assert.Contains("metadata database unavailable", body.RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);
            using var put = await c.Client.PutAsync($"{c.Url}/during", new ByteArrayContent(data));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, put.StatusCode);
        }
        finally
        {
            await pg.StartAsync();
        }
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/kept"));
        using var after = await c.Client.PutAsync($"{c.Url}/after", new ByteArrayContent(data));
        Assert.Equal(HttpStatusCode.Created, after.StatusCode);
    }
}
