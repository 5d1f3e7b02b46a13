using System.Net;
using Amazon.S3;
using Amazon.S3.Model;

namespace NanoKv.Tests.S3;

/// <summary>Bucket operations through AWSSDK.S3 against a real coordinator and volumes.</summary>
public sealed class S3ApiBucketTests(S3ClusterFixture fx) : IClassFixture<S3ClusterFixture>
{
    [Fact]
    public async Task CreateListHeadLocateAndDeleteBuckets()
    {
        using var alice = fx.Client();
        using var bob = fx.Client(S3ClusterFixture.Ak2, S3ClusterFixture.Sk2);
        var name = S3ClusterFixture.Bucket("life");
        Assert.Equal(HttpStatusCode.OK, (await alice.PutBucketAsync(name)).HttpStatusCode);

        var owned = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => alice.PutBucketAsync(name));
        Assert.Equal("BucketAlreadyOwnedByYou", owned.ErrorCode);
        Assert.Equal(HttpStatusCode.Conflict, owned.StatusCode);
        var taken = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => bob.PutBucketAsync(name));
        Assert.Equal("BucketAlreadyExists", taken.ErrorCode);

        Assert.Contains(name, (await alice.ListBucketsAsync()).Buckets.Select(b => b.BucketName));
        Assert.DoesNotContain(name, ((await bob.ListBucketsAsync()).Buckets ?? []).Select(b => b.BucketName));
        Assert.True(await Amazon.S3.Util.AmazonS3Util.DoesS3BucketExistV2Async(alice, name));
        var location = await alice.GetBucketLocationAsync(name);
        Assert.True(string.IsNullOrEmpty(location.Location?.Value) || location.Location.Value == "us-east-1");

        // Another user's requests are AccessDenied; a missing bucket is NoSuchBucket.
        var denied = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => bob.PutObjectAsync(new PutObjectRequest { BucketName = name, Key = "x", ContentBody = "x" }));
        Assert.Equal("AccessDenied", denied.ErrorCode);
        Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
        var missing = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => alice.ListObjectsV2Async(new ListObjectsV2Request { BucketName = name + "-none" }));
        Assert.Equal("NoSuchBucket", missing.ErrorCode);

        await alice.PutObjectAsync(new PutObjectRequest { BucketName = name, Key = "k", ContentBody = "v" });
        var notEmpty = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => alice.DeleteBucketAsync(name));
        Assert.Equal("BucketNotEmpty", notEmpty.ErrorCode);
        await alice.DeleteObjectAsync(name, "k");
        Assert.Equal(HttpStatusCode.NoContent, (await alice.DeleteBucketAsync(name)).HttpStatusCode);
        Assert.False(await Amazon.S3.Util.AmazonS3Util.DoesS3BucketExistV2Async(alice, name));
    }

    [Fact]
    public async Task RawHttpErrorsAreS3XmlWithRequestIds()
    {
        using var http = new HttpClient();
        // Unsigned: AccessDenied, as XML with x-amz-request-id.
        using var anon = await http.GetAsync(fx.S3Url + "/");
        Assert.Equal(HttpStatusCode.Forbidden, anon.StatusCode);
        Assert.True(anon.Headers.Contains("x-amz-request-id"));
        var xml = await anon.Content.ReadAsStringAsync();
        Assert.Contains("<Code>AccessDenied</Code>", xml, StringComparison.Ordinal);
        Assert.Contains("<RequestId>" + anon.Headers.GetValues("x-amz-request-id").Single() + "</RequestId>", xml, StringComparison.Ordinal);

        // Signed 20 minutes in the past: RequestTimeTooSkewed. Invalid bucket name: InvalidBucketName. Unknown sub-resource: 501.
        var old = DateTimeOffset.UtcNow.AddMinutes(-20);
        using var skewed = await SendSignedAsync(http, HttpMethod.Get, "/", "", old);
        Assert.Equal(HttpStatusCode.Forbidden, skewed.StatusCode);
        Assert.Contains("<Code>RequestTimeTooSkewed</Code>", await skewed.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        using var badName = await SendSignedAsync(http, HttpMethod.Put, "/Bad_Name", "", DateTimeOffset.UtcNow);
        Assert.Equal(HttpStatusCode.BadRequest, badName.StatusCode);
        Assert.Contains("<Code>InvalidBucketName</Code>", await badName.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        using var tagging = await SendSignedAsync(http, HttpMethod.Get, "/somebucket", "tagging", DateTimeOffset.UtcNow);
        Assert.Equal(HttpStatusCode.NotImplemented, tagging.StatusCode);
        Assert.Contains("<Code>NotImplemented</Code>", await tagging.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.True(tagging.Headers.Contains("x-amz-request-id"));
    }

    [Fact]
    public async Task VirtualHostStyleAddressing()
    {
        using var alice = fx.Client();
        var name = S3ClusterFixture.Bucket("vhost");
        await alice.PutBucketAsync(name);
        await alice.PutObjectAsync(new PutObjectRequest { BucketName = name, Key = "dir/v.txt", ContentBody = "virtual" });
        using var http = new HttpClient();
        using var resp = await SendSignedAsync(http, HttpMethod.Get, "/dir/v.txt", "", DateTimeOffset.UtcNow, host: $"{name}.localhost");
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        Assert.Equal("virtual", await resp.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task VirtualHostStyleUnderAConfiguredDomain()
    {
        var port = new Uri(fx.S3Url).Port;
        var raw = new RawS3(fx.S3Url);
        var name = S3ClusterFixture.Bucket("vdomain");
        var vhost = $"{name}.{S3ClusterFixture.VhostDomain}:{port}";
        // CreateBucket, PutObject, GetObject, ListObjectsV2 and DeleteObject with the bucket only in the Host header.
        Assert.Equal(HttpStatusCode.OK, (await raw.SendAsync(HttpMethod.Put, "/", [], host: vhost)).Status);
        Assert.Equal(HttpStatusCode.OK, (await raw.SendAsync(HttpMethod.Put, "/a/b.txt", "by host"u8.ToArray(), host: vhost)).Status);
        var get = await raw.SendAsync(HttpMethod.Get, "/a/b.txt", host: vhost);
        Assert.Equal((HttpStatusCode.OK, "by host"), (get.Status, get.Body));
        var list = await raw.SendAsync(HttpMethod.Get, "/?list-type=2&prefix=a%2F", host: vhost.ToUpperInvariant());
        Assert.Equal(HttpStatusCode.OK, list.Status);
        Assert.Contains($"<Name>{name}</Name>", list.Body, StringComparison.Ordinal);
        Assert.Contains("<Key>a/b.txt</Key>", list.Body, StringComparison.Ordinal);

        // The same object path style, through the bare domain and through localhost; an unknown domain is path style too.
        foreach (var host in new[] { $"{S3ClusterFixture.VhostDomain}:{port}", $"localhost:{port}", $"{name}.elsewhere.test:{port}" })
        {
            var path = await raw.SendAsync(HttpMethod.Get, $"/{name}/a/b.txt", host: host);
            Assert.True(path.Status == HttpStatusCode.OK, $"{host}: {(int)path.Status} {path.Body}");
            Assert.Equal("by host", path.Body);
        }
        var wrong = await raw.SendAsync(HttpMethod.Get, "/a/b.txt", host: $"{name}.elsewhere.test:{port}");
        Assert.Equal(HttpStatusCode.NotFound, wrong.Status); // path style: bucket "a", which does not exist
        Assert.Contains("<Code>NoSuchBucket</Code>", wrong.Body, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NoContent, (await raw.SendAsync(HttpMethod.Delete, "/a/b.txt", host: vhost)).Status);
    }

    /// <summary>A request signed with the spec signer of the unit tests (for cases the SDK will not produce).</summary>
    private async Task<HttpResponseMessage> SendSignedAsync(HttpClient http, HttpMethod method, string path, string query, DateTimeOffset when, string? host = null)
    {
        var uri = new Uri(fx.S3Url + path + (query.Length > 0 ? "?" + query : ""));
        var hostHeader = host is null ? uri.Authority : $"{host}:{uri.Port}";
        var amzDate = when.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", System.Globalization.CultureInfo.InvariantCulture);
        (string, string)[] headers = [("host", hostHeader), ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"), ("x-amz-date", amzDate)];
        var canonicalQuery = query.Length == 0 ? "" : query.Contains('=', StringComparison.Ordinal) ? query : query + "=";
        var auth = S3TestRequests.Authorization(method.Method, path, canonicalQuery, headers, "UNSIGNED-PAYLOAD", amzDate,
            secret: S3ClusterFixture.Sk1, accessKey: S3ClusterFixture.Ak1);
        using var req = new HttpRequestMessage(method, uri);
        req.Headers.Host = hostHeader;
        req.Headers.TryAddWithoutValidation("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
        req.Headers.TryAddWithoutValidation("x-amz-date", amzDate);
        req.Headers.TryAddWithoutValidation("Authorization", auth);
        if (method == HttpMethod.Put)
        {
            req.Content = new ByteArrayContent([]);
        }
        return await http.SendAsync(req);
    }
}
