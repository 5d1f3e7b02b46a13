using System.Collections.Concurrent;
using System.Net;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using NanoKv.S3;
using NanoKv.S3.Checksums;
using NanoKv.S3.Payload;
using NanoKv.S3.SigV4;
using NanoKv.S3.Xml;
using ChecksumAlgorithm = NanoKv.S3.Checksums.ChecksumAlgorithm;

namespace NanoKv.Tests.S3;

/// <summary>The protocol library against what AWSSDK.S3 4.x really sends (default settings: flexible checksums, aws-chunked with a
/// signed trailer over plain HTTP): a tiny in-memory endpoint built only from NanoKv.S3 verifies every request.</summary>
public sealed class SdkSignedRequestTests : IAsyncLifetime
{
    private const string Ak = "SDKTESTKEY0000000000";
    private const string Sk = "sdk/test+secret0000000000000000000000000";
    private readonly ConcurrentDictionary<string, byte[]> _objects = new();
    private readonly ConcurrentQueue<(PayloadMode Mode, ChecksumAlgorithm? Trailer, ChecksumAlgorithm? Header)> _seen = new();
    private WebApplication _app = null!;
    private string _url = "";

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        _app = builder.Build();
        var verifier = new SigV4Verifier(S3Users.Parse($"{Ak}:{Sk}"));
        _app.Run(ctx => HandleAsync(ctx, verifier));
        await _app.StartAsync();
        _url = _app.Urls.First();
    }

    public async Task DisposeAsync() => await _app.DisposeAsync();

    private async Task HandleAsync(HttpContext ctx, SigV4Verifier verifier)
    {
        ctx.Response.Headers["x-amz-request-id"] = "TEST";
        var raw = ctx.Features.Get<IHttpRequestFeature>()!.RawTarget;
        var q = raw.IndexOf('?', StringComparison.Ordinal);
        var (path, query) = q < 0 ? (raw, "") : (raw[..q], raw[(q + 1)..]);
        string? Header(string n) => ctx.Request.Headers.TryGetValue(n, out var v) ? v.ToString() : null;
        try
        {
            var auth = verifier.Verify(new SigV4Request(ctx.Request.Method, path, query, Header));
            var key = AwsUri.Decode(path, plusIsSpace: false);
            if (ctx.Request.Method == "PUT")
            {
                Stream body = ctx.Request.Body;
                AwsChunkedStream? chunked = null;
                long? decoded = Header("x-amz-decoded-content-length") is { } d ? long.Parse(d, System.Globalization.CultureInfo.InvariantCulture) : null;
                if (auth.IsStreaming)
                {
                    body = chunked = new AwsChunkedStream(body, auth, decoded, Header("x-amz-trailer"));
                }
                var checks = PayloadChecks.FromHeaders(Header, auth, auth.IsStreaming ? decoded : ctx.Request.ContentLength);
                await using var verifying = new VerifyingStream(body, checks);
                var ms = new MemoryStream();
                await verifying.CopyToAsync(ms, ctx.RequestAborted);
                _objects[key] = ms.ToArray();
                _seen.Enqueue((auth.Payload, chunked?.TrailerChecksum?.Algorithm, verifying.Checksum?.Algorithm));
                ctx.Response.Headers.ETag = ETags.Quote(verifying.Md5Hex!);
                return;
            }
            if (ctx.Request.Method == "GET" && AwsUri.ParseQuery(query).Any(p => p.Key == "list-type"))
            {
                var prefix = AwsUri.ParseQuery(query).FirstOrDefault(p => p.Key == "prefix").Value ?? "";
                var bucket = key.Trim('/');
                var page = new ListObjectsPage
                {
                    Bucket = bucket,
                    Prefix = prefix,
                    Contents = _objects.Where(o => o.Key.StartsWith("/" + bucket + "/" + prefix, StringComparison.Ordinal))
                        .Select(o => new ObjectEntry(o.Key[(bucket.Length + 2)..], DateTimeOffset.UtcNow, "00", o.Value.Length)).ToList(),
                };
                ctx.Response.ContentType = S3Xml.ContentType;
                await ctx.Response.Body.WriteAsync(S3Responses.ListObjectsV2(page));
                return;
            }
            if (!_objects.TryGetValue(key, out var data))
            {
                throw new S3Exception(S3ErrorCode.NoSuchKey, "The specified key does not exist.");
            }
            await ctx.Response.Body.WriteAsync(data);
        }
        catch (S3Exception e)
        {
            ctx.Response.StatusCode = e.Status;
            ctx.Response.ContentType = S3Xml.ContentType;
            await ctx.Response.Body.WriteAsync(S3ErrorDocument.Write(e, path, "TEST"));
        }
    }

    private AmazonS3Client Client(string secret = Sk) => new(new BasicAWSCredentials(Ak, secret), new AmazonS3Config
    {
        ServiceURL = _url,
        ForcePathStyle = true,
        AuthenticationRegion = "us-east-1",
        MaxErrorRetry = 0,
    });

    public static TheoryData<string?> Algorithms => new([null, "CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]);

    [Theory]
    [MemberData(nameof(Algorithms))]
    public async Task PutObjectWithDefaultSettingsIsVerified(string? algorithm)
    {
        using var s3 = Client();
        var data = AwsChunkedStreamTests.RandomBytes(1_000_003);
        var req = new PutObjectRequest { BucketName = "bkt", Key = "dir/a b+c=d/ü.bin", InputStream = new MemoryStream(data) };
        if (algorithm is not null)
        {
            req.ChecksumAlgorithm = new Amazon.S3.ChecksumAlgorithm(algorithm);
        }
        var resp = await s3.PutObjectAsync(req);
        Assert.Equal(HttpStatusCode.OK, resp.HttpStatusCode);
        Assert.Equal(data, _objects["/bkt/dir/a b+c=d/ü.bin"]);
        Assert.True(_seen.TryDequeue(out var seen));
        Assert.Equal(PayloadMode.StreamingSignedTrailer, seen.Mode);
        Assert.True(ChecksumAlgorithms.TryParse(algorithm ?? "crc32", out var expected));
        Assert.Equal(expected, seen.Trailer);
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.MD5.HashData(data)), ETags.Unquote(resp.ETag));
    }

    [Fact]
    public async Task UnchunkedAndUnsignedVariantsAreVerified()
    {
        using var s3 = Client();
        var data = AwsChunkedStreamTests.RandomBytes(70_000);
        await s3.PutObjectAsync(new PutObjectRequest { BucketName = "bkt", Key = "plain", InputStream = new MemoryStream(data), UseChunkEncoding = false });
        Assert.True(_seen.TryDequeue(out var plain));
        Assert.Contains(plain.Mode, new[] { PayloadMode.SignedSha256, PayloadMode.Unsigned });
        Assert.Equal(data, _objects["/bkt/plain"]);
    }

    [Fact]
    public async Task PresignedUrlFetchedWithPlainHttpClient()
    {
        using var s3 = Client();
        await s3.PutObjectAsync(new PutObjectRequest { BucketName = "bkt", Key = "pre sign/é.txt", ContentBody = "hello presigned" });
        var url = await s3.GetPreSignedURLAsync(new GetPreSignedUrlRequest
        {
            BucketName = "bkt",
            Key = "pre sign/é.txt",
            Verb = HttpVerb.GET,
            Expires = DateTime.UtcNow.AddMinutes(5),
            Protocol = Protocol.HTTP,
        });
        using var http = new HttpClient();
        Assert.Equal("hello presigned", await http.GetStringAsync(url));
        var tampered = url.Replace("X-Amz-Signature=", "X-Amz-Signature=0", StringComparison.Ordinal);
        using var bad = await http.GetAsync(tampered);
        Assert.Equal(HttpStatusCode.Forbidden, bad.StatusCode);
        Assert.Contains("<Code>SignatureDoesNotMatch</Code>", await bad.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ListObjectsV2XmlParsesInTheSdkAndWrongSecretIsSignatureDoesNotMatch()
    {
        using var s3 = Client();
        await s3.PutObjectAsync(new PutObjectRequest { BucketName = "lbk", Key = "p/x y", ContentBody = "1" });
        var list = await s3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = "lbk", Prefix = "p/" });
        Assert.Equal(["p/x y"], list.S3Objects.Select(o => o.Key));

        using var wrong = Client("not-the-secret");
        var e = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => wrong.GetObjectAsync("lbk", "p/x y"));
        Assert.Equal("SignatureDoesNotMatch", e.ErrorCode);
        Assert.Equal(HttpStatusCode.Forbidden, e.StatusCode);
        Assert.Equal("TEST", e.RequestId);
    }
}
