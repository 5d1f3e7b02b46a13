using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using NanoKv.Coordinator.Api.S3;
using NanoKv.S3.Checksums;
using NanoKv.S3.SigV4;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.S3;

/// <summary>aws-chunked bodies against the real endpoint (a forged chunk stores nothing), and the S3 command-line rules.</summary>
public sealed class S3ApiBodyAndCliTests(S3ClusterFixture fx) : IClassFixture<S3ClusterFixture>
{
    /// <summary>PUT with an aws-chunked body built by the spec signer of the unit tests; optionally one byte flipped after signing.</summary>
    private async Task<HttpResponseMessage> PutChunkedAsync(string bucket, string key, byte[] payload, string mode, bool corrupt)
    {
        var uri = new Uri($"{fx.S3Url}/{bucket}/{key}");
        var amzDate = DateTimeOffset.UtcNow.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        var scope = $"{amzDate[..8]}/us-east-1/s3/aws4_request";
        var trailerName = "x-amz-checksum-crc64nvme";
        (string, string)[] headers =
        [
            ("content-encoding", "aws-chunked"), ("host", uri.Authority), ("x-amz-content-sha256", mode), ("x-amz-date", amzDate),
            ("x-amz-decoded-content-length", payload.Length.ToString(CultureInfo.InvariantCulture)), ("x-amz-trailer", trailerName),
        ];
        var auth = S3TestRequests.Authorization("PUT", uri.AbsolutePath, "", headers, mode, amzDate, secret: S3ClusterFixture.Sk1, accessKey: S3ClusterFixture.Ak1);
        var seed = auth[(auth.IndexOf("Signature=", StringComparison.Ordinal) + 10)..];
        var signed = mode != "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
        var body = S3TestRequests.ChunkedBody(payload, 64 * 1024, signed ? seed : null, amzDate, scope,
            (trailerName, AwsChunkedStreamTests.Checksum(ChecksumAlgorithm.Crc64Nvme, payload)), signTrailer: signed, secret: S3ClusterFixture.Sk1);
        if (corrupt)
        {
            body[body.Length / 2] ^= 0x01;
        }
        using var req = new HttpRequestMessage(HttpMethod.Put, uri) { Content = new ByteArrayContent(body) };
        foreach (var (n, v) in headers.Where(h => h.Item1 is not ("host" or "content-encoding")))
        {
            req.Headers.TryAddWithoutValidation(n, v);
        }
        req.Content.Headers.ContentEncoding.Add("aws-chunked");
        req.Headers.TryAddWithoutValidation("Authorization", auth);
        using var http = new HttpClient();
        return await http.SendAsync(req);
    }

    [Theory]
    [InlineData("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "SignatureDoesNotMatch")]
    [InlineData("STREAMING-UNSIGNED-PAYLOAD-TRAILER", "BadDigest")]
    public async Task ChunkedBodiesAreVerifiedAndAForgedOneStoresNothing(string mode, string errorOnCorruption)
    {
        using var s3 = fx.Client();
        var bucket = S3ClusterFixture.Bucket("chunked");
        await s3.PutBucketAsync(bucket);
        var payload = AwsChunkedStreamTests.RandomBytes(300_000);
        using (var ok = await PutChunkedAsync(bucket, "good", payload, mode, corrupt: false))
        {
            Assert.True(ok.StatusCode == HttpStatusCode.OK, await ok.Content.ReadAsStringAsync());
            Assert.True(ok.Headers.Contains("x-amz-checksum-crc64nvme"));
        }
        using (var got = await s3.GetObjectAsync(bucket, "good"))
        {
            using var ms = new MemoryStream();
            await got.ResponseStream.CopyToAsync(ms);
            Assert.Equal(payload, ms.ToArray());
        }
        using (var bad = await PutChunkedAsync(bucket, "bad", payload, mode, corrupt: true))
        {
            var xml = await bad.Content.ReadAsStringAsync();
            Assert.True(bad.StatusCode is HttpStatusCode.Forbidden or HttpStatusCode.BadRequest, xml);
            Assert.Contains($"<Code>{errorOnCorruption}</Code>", xml, StringComparison.Ordinal);
        }
        var missing = await Assert.ThrowsAnyAsync<Amazon.S3.AmazonS3Exception>(() => s3.GetObjectMetadataAsync(bucket, "bad"));
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
    }

    [Fact]
    public void ServeRefusesS3WithoutUsersAndDevKeepsGeneratedCredentials()
    {
        var cli = new S3Cli();
        var cmd = new RootCommand();
        foreach (var o in cli.All)
        {
            cmd.Options.Add(o);
        }
        Assert.Null(cli.ForServe(cmd.Parse([])));
        var saved = Environment.GetEnvironmentVariable(S3Options.EnvUsers);
        Environment.SetEnvironmentVariable(S3Options.EnvUsers, null);
        try
        {
            var e = Assert.Throws<ArgumentException>(() => cli.ForServe(cmd.Parse(["--s3-port", "9000"])));
            Assert.Contains("--s3-users", e.Message, StringComparison.Ordinal);
            var options = cli.ForServe(cmd.Parse(["--s3-port", "9100", "--s3-users", "AK:SK", "--s3-host", "0.0.0.0"]))!;
            Assert.Equal((9100, "0.0.0.0", 1), (options.Port, options.Host, options.Users.Count));
            Assert.Equal(["localhost"], options.Domains);
            var vhosts = cli.ForServe(cmd.Parse(["--s3-port", "9100", "--s3-users", "AK:SK", "--s3-domain", "example.com, .S3.Other.org,localhost"]))!;
            Assert.Equal(["localhost", "example.com", "s3.other.org"], vhosts.Domains);

            var dir = TempDir.Create("s3dev");
            try
            {
                var first = cli.ForDev(cmd.Parse([]), dir, out var file, out var ak, out var sk);
                Assert.Equal(9000, first.Port);
                Assert.Equal($"{ak}:{sk}", File.ReadAllText(file).Trim());
                cli.ForDev(cmd.Parse([]), dir, out _, out var ak2, out var sk2);
                Assert.Equal((ak, sk), (ak2, sk2));
            }
            finally
            {
                TempDir.Delete(dir);
            }
        }
        finally
        {
            Environment.SetEnvironmentVariable(S3Options.EnvUsers, saved);
        }
    }
}
