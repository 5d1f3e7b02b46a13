using System.Net;
using System.Xml.Linq;
using NanoKv.Coordinator.Api.S3;
using NanoKv.S3;
using NanoKv.S3.SigV4;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.S3;

/// <summary>The S3 endpoint over PostgreSQL metadata: the database going away is a retryable 503 ServiceUnavailable, not a 500.</summary>
public sealed class S3MetaUnavailableTests(PostgresFixture pg) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task DatabaseDownIsServiceUnavailableThenS3ResumesByItself()
    {
        var dsn = await pg.CreateDatabaseAsync() + "?retry_ms=1000";
        await using var c = await TestCluster.StartAsync(meta: dsn, configure: o => o with
        {
            S3 = new S3Options { Port = 0, Users = S3Users.Parse($"{S3ClusterFixture.Ak1}:{S3ClusterFixture.Sk1}") },
        });
        var s3 = new RawS3(c.Coordinator.S3Url!);
        Assert.Equal(HttpStatusCode.OK, (await s3.SendAsync(HttpMethod.Put, "/pgdown")).Status);
        Assert.Equal(HttpStatusCode.OK, (await s3.SendAsync(HttpMethod.Put, "/pgdown/kept", "kept"u8.ToArray())).Status);

        await pg.StopAsync();
        try
        {
            foreach (var (method, path, body) in new (HttpMethod, string, byte[]?)[]
            {
                (HttpMethod.Get, "/pgdown/kept", null),
                (HttpMethod.Put, "/pgdown/during", "x"u8.ToArray()),
                (HttpMethod.Get, "/pgdown?list-type=2", null),
            })
            {
                var r = await s3.SendAsync(method, path, body);
                Assert.True(r.Status == HttpStatusCode.ServiceUnavailable, $"{method} {path}: {(int)r.Status} {r.Body}");
                Assert.Equal("1", r.Headers["Retry-After"]);
                Assert.False(string.IsNullOrEmpty(r.Headers["x-amz-request-id"]));
                var error = XDocument.Parse(r.Body).Root!;
                Assert.Equal("ServiceUnavailable", error.Element("Code")!.Value);
                Assert.Equal(r.Headers["x-amz-request-id"], error.Element("RequestId")!.Value);
                Assert.Contains("metadata database", error.Element("Message")!.Value, StringComparison.Ordinal);
            }
            // HEAD answers the status alone, with the headers.
            var head = await s3.SendAsync(HttpMethod.Head, "/pgdown/kept");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, head.Status);
            Assert.Equal("1", head.Headers["Retry-After"]);
        }
        finally
        {
            await pg.StartAsync();
        }
        // Back by itself: the pool's dead connections may still cost a request or two a 503 (with Retry-After), so
        // the test awaits the first 200 instead of demanding it of the very first request.
        RawS3.Answer after = null!;
        await TestCluster.WaitUntilAsync(async () => (after = await s3.SendAsync(HttpMethod.Get, "/pgdown/kept")).Status != HttpStatusCode.ServiceUnavailable,
            TimeSpan.FromSeconds(20), "S3 answers again after PostgreSQL restarted");
        Assert.Equal(HttpStatusCode.OK, after.Status);
        Assert.Equal("kept", after.Body);
        Assert.Equal(HttpStatusCode.OK, (await s3.SendAsync(HttpMethod.Put, "/pgdown/after", "y"u8.ToArray())).Status);
    }
}

/// <summary>Raw HTTP to the S3 listener, SigV4-signed by <see cref="SigV4Signer"/> (UNSIGNED-PAYLOAD): status, headers, body as text.</summary>
internal sealed class RawS3(string endpoint, string ak = S3ClusterFixture.Ak1, string sk = S3ClusterFixture.Sk1)
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromMinutes(2) };
    private readonly SigV4Signer _signer = new(ak, sk);

    public sealed record Answer(HttpStatusCode Status, Dictionary<string, string> Headers, string Body);

    /// <summary>Sends to pathAndQuery (already encoded); <paramref name="host"/> overrides the Host header (virtual-host style).</summary>
    public async Task<Answer> SendAsync(HttpMethod method, string pathAndQuery, byte[]? body = null, string? host = null, params (string Name, string Value)[] headers)
    {
        var uri = new Uri(endpoint.TrimEnd('/') + pathAndQuery);
        using var request = new HttpRequestMessage(method, uri);
        if (host is not null)
        {
            request.Headers.Host = host;
        }
        foreach (var (name, value) in _signer.Sign(method.Method, host ?? uri.Authority, uri.PathAndQuery, extraHeaders: headers.Select(h => new KeyValuePair<string, string>(h.Name, h.Value))))
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }
        if (body is not null)
        {
            request.Content = new ByteArrayContent(body);
        }
        foreach (var (name, value) in headers)
        {
            if (!request.Headers.TryAddWithoutValidation(name, value))
            {
                (request.Content ??= new ByteArrayContent([])).Headers.TryAddWithoutValidation(name, value);
            }
        }
        using var response = await Http.SendAsync(request);
        var all = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var h in response.Headers.Concat(response.Content.Headers))
        {
            all[h.Key] = string.Join(',', h.Value);
        }
        return new Answer(response.StatusCode, all, await response.Content.ReadAsStringAsync());
    }
}
