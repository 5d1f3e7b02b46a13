using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Observability;

/// <summary>GET /?list on a live in-process cluster: paging in key order, prefixes, hidden deletes, bad parameters.</summary>
public sealed class ListingTests
{
    [Fact]
    public async Task Pages_through_every_committed_key_in_order_and_hides_deleted_ones()
    {
        await using var cluster = await TestCluster.StartAsync(volumes: 3, replicas: 2);
        var keys = new List<byte[]>();
        for (var i = 0; i < 23; i++)
        {
            keys.Add(System.Text.Encoding.UTF8.GetBytes($"photos/{i:D3}.jpg"));
        }
        keys.Add("docs/a b+c?.txt"u8.ToArray());
        keys.Add("docs/ü/ñ"u8.ToArray());
        keys.Add([(byte)'d', (byte)'o', (byte)'c', (byte)'s', (byte)'/', 0xFF, 0xFE]); // not UTF-8 (Kestrel refuses %00 in paths)
        keys.Add("photos"u8.ToArray()); // equal to a prefix: listed under prefix "photos"
        foreach (var k in keys)
        {
            using var put = await cluster.Client.PutAsync($"{cluster.Url}/{KeyCodec.Encode(k)}", new ByteArrayContent(k));
            Assert.True(put.StatusCode == HttpStatusCode.Created, $"{KeyCodec.Encode(k)}: {await put.Content.ReadAsStringAsync()}");
        }
        var deleted = keys[5];
        (await cluster.Client.DeleteAsync($"{cluster.Url}/{KeyCodec.Encode(deleted)}")).EnsureSuccessStatusCode();
        var live = keys.Where(k => k != deleted).ToList();

        // Every key once, in byte order, across pages of 4.
        var listed = await ListAllAsync(cluster, prefix: null, limit: 4);
        var expected = live.Select(k => KeyCodec.Encode(k)).ToList();
        expected.Sort((a, b) => KeyOrder(a, b));
        Assert.Equal(expected, listed.Select(e => e.Key).ToList());
        Assert.DoesNotContain(KeyCodec.Encode(deleted), listed.Select(e => e.Key));
        var first = listed.Single(e => e.Key == KeyCodec.Encode(keys[0]));
        Assert.Equal(keys[0].Length, first.Size);
        Assert.Equal(2, first.Replicas.Count);
        Assert.True(first.Version > 0);
        Assert.Equal(64, first.Etag.Length);

        // Prefix bounds the scan; the cursor keeps it bounded across pages.
        var photos = await ListAllAsync(cluster, prefix: "photos", limit: 5);
        Assert.Equal(23, photos.Count); // 22 photos/… plus "photos" itself
        Assert.All(photos, e => Assert.StartsWith("photos", e.Key, StringComparison.Ordinal));
        var docs = await ListAllAsync(cluster, prefix: "docs%2F", limit: 2);
        Assert.Equal(3, docs.Count);
        Assert.Contains(KeyCodec.Encode(keys[^2]), docs.Select(d => d.Key));
        Assert.Empty(await ListAllAsync(cluster, prefix: "nothing-here", limit: 10));

        // A last page exactly full says there is nothing after it.
        var page = await cluster.Client.GetFromJsonAsync<JsonElement>($"{cluster.Url}/?list&prefix=docs%2F&limit=3");
        Assert.Equal(3, page.GetProperty("keys").GetArrayLength());
        Assert.Equal(JsonValueKind.Null, page.GetProperty("next_after").ValueKind);
    }

    [Theory]
    [InlineData("/?list&limit=0")]
    [InlineData("/?list&limit=10001")]
    [InlineData("/?list&limit=abc")]
    [InlineData("/?list&prefix=LONG")]
    [InlineData("/?list&after=LONG")]
    [InlineData("/?list&colour=blue")]
    public async Task Bad_parameters_are_400_json(string target)
    {
        await using var cluster = await TestCluster.StartAsync(volumes: 1, replicas: 1);
        // Over-long keys: HttpClient repairs malformed percent-escapes itself, so those cannot be sent from here.
        using var resp = await cluster.Client.GetAsync(cluster.Url + target.Replace("LONG", new string('k', 1100), StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        var body = await resp.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("invalid_argument", body.GetProperty("error").GetString());
        Assert.False(string.IsNullOrEmpty(body.GetProperty("detail").GetString()));
    }

    [Fact]
    public async Task Listing_needs_an_access_key_when_keys_are_on_and_the_console_keys_are_reserved()
    {
        await using var cluster = await TestCluster.StartAsync(volumes: 1, replicas: 1, configure: o => o with { ReadOnlyKeys = ["ro-key"] }, secret: "s3cret");
        using (var anonymous = await cluster.Client.GetAsync($"{cluster.Url}/?list"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        }
        foreach (var key in new[] { "ro-key", "s3cret" })
        {
            using var req = new HttpRequestMessage(HttpMethod.Get, $"{cluster.Url}/?list");
            req.Headers.Add("X-NanoKv-Key", key);
            using var resp = await cluster.Client.SendAsync(req);
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        }
        using var put = new HttpRequestMessage(HttpMethod.Put, $"{cluster.Url}/ui") { Content = new ByteArrayContent([1]) };
        put.Headers.Add("X-NanoKv-Key", "s3cret");
        using var refused = await cluster.Client.SendAsync(put);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains("reserved", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    private static async Task<List<Entry>> ListAllAsync(TestCluster cluster, string? prefix, int limit)
    {
        var all = new List<Entry>();
        string? after = null;
        for (var pages = 0; pages < 100; pages++)
        {
            var url = $"{cluster.Url}/?list&limit={limit}" + (prefix is null ? "" : $"&prefix={prefix}") + (after is null ? "" : $"&after={after}");
            var page = await cluster.Client.GetFromJsonAsync<JsonElement>(url);
            var keys = page.GetProperty("keys").EnumerateArray().Select(k => new Entry(
                k.GetProperty("key").GetString()!, k.GetProperty("size").GetInt64(), k.GetProperty("etag").GetString()!,
                k.GetProperty("version").GetInt64(), [.. k.GetProperty("replicas").EnumerateArray().Select(r => r.GetString()!)])).ToList();
            Assert.True(keys.Count <= limit);
            all.AddRange(keys);
            after = page.GetProperty("next_after").GetString();
            if (after is null)
            {
                return all;
            }
            Assert.Equal(limit, keys.Count); // only a full page has a cursor
        }
        throw new InvalidOperationException("listing did not end");
    }

    private static int KeyOrder(string a, string b)
    {
        KeyCodec.TryDecode(a, out var ka, out _);
        KeyCodec.TryDecode(b, out var kb, out _);
        return ka.AsSpan().SequenceCompareTo(kb);
    }

    private sealed record Entry(string Key, long Size, string Etag, long Version, List<string> Replicas);
}
