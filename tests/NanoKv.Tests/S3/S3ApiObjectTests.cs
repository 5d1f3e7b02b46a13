using System.Net;
using System.Security.Cryptography;
using System.Text;
using Amazon.S3;
using Amazon.S3.Model;
using NanoKv.S3.Xml;

namespace NanoKv.Tests.S3;

/// <summary>Object operations through AWSSDK.S3 (default settings) against a real coordinator and volumes.</summary>
public sealed class S3ApiObjectTests(S3ClusterFixture fx) : IClassFixture<S3ClusterFixture>
{
    private async Task<(AmazonS3Client S3, string Bucket)> BucketAsync(string name)
    {
        var s3 = fx.Client();
        var bucket = S3ClusterFixture.Bucket(name);
        await s3.PutBucketAsync(bucket);
        return (s3, bucket);
    }

    private static async Task<byte[]> ReadAsync(GetObjectResponse r)
    {
        using (r)
        {
            using var ms = new MemoryStream();
            await r.ResponseStream.CopyToAsync(ms);
            return ms.ToArray();
        }
    }

    [Fact]
    public async Task PutGetHeadWithAttributesMetadataAndOverrides()
    {
        var (s3, bucket) = await BucketAsync("attrs");
        using var _ = s3;
        var data = AwsChunkedStreamTests.RandomBytes(1_500_000);
        var put = new PutObjectRequest { BucketName = bucket, Key = "dir/ünï code+sp ace.bin", InputStream = new MemoryStream(data), ContentType = "application/x-test" };
        put.Metadata.Add("color", "blue");
        put.Headers.CacheControl = "max-age=60";
        put.Headers.ContentDisposition = "attachment; filename=\"x.bin\"";
        put.Headers.ContentEncoding = "identity";
        put.Headers["Content-Language"] = "en";
        var putResp = await s3.PutObjectAsync(put);
        var md5 = Convert.ToHexStringLower(MD5.HashData(data));
        Assert.Equal(md5, ETags.Unquote(putResp.ETag));

        var get = await s3.GetObjectAsync(bucket, "dir/ünï code+sp ace.bin");
        Assert.Equal("application/x-test", get.Headers.ContentType);
        Assert.Equal("blue", get.Metadata["color"]);
        Assert.Equal("max-age=60", get.Headers.CacheControl);
        Assert.Equal("attachment; filename=\"x.bin\"", get.Headers.ContentDisposition);
        Assert.Equal("en", get.Headers["Content-Language"]);
        Assert.Equal(md5, ETags.Unquote(get.ETag));
        Assert.Equal(data, await ReadAsync(get));

        var head = await s3.GetObjectMetadataAsync(bucket, "dir/ünï code+sp ace.bin");
        Assert.Equal(data.Length, head.ContentLength);
        Assert.Equal("blue", head.Metadata["color"]);

        var overridden = await s3.GetObjectAsync(new GetObjectRequest
        {
            BucketName = bucket,
            Key = "dir/ünï code+sp ace.bin",
            ResponseHeaderOverrides = new ResponseHeaderOverrides { ContentType = "text/plain", ContentDisposition = "inline", CacheControl = "no-cache" },
        });
        Assert.Equal("text/plain", overridden.Headers.ContentType);
        Assert.Equal("inline", overridden.Headers.ContentDisposition);
        Assert.Equal("no-cache", overridden.Headers.CacheControl);
        overridden.Dispose();

        var missing = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => s3.GetObjectAsync(bucket, "nope"));
        Assert.Equal("NoSuchKey", missing.ErrorCode);
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.False(string.IsNullOrEmpty(missing.RequestId));
    }

    /// <summary>
    /// A full GET of a large object from a replica on the coordinator's host is handed to that volume (ReadHandoffTests):
    /// what the SDK sees — bytes, S3 headers, metadata, the MD5 ETag — is the same.
    /// </summary>
    [Fact]
    public async Task ALargeGetHandedToTheVolumeKeepsItsS3HeadersAndBytes()
    {
        var (s3, bucket) = await BucketAsync("handoff");
        using var _ = s3;
        var volumes = fx.Cluster.Volumes.Where(v => v is not null).Select(v => v!).ToList();
        double Pinned() => volumes.Sum(v => v.Metrics.CommitPins.WithLabels("pinned").Value);
        var pinnedBefore = Pinned();
        var handed = fx.Cluster.Coordinator.Objects.Metrics.ReadHandoffs.WithLabels("sent");
        var handedBefore = handed.Value;
        var data = AwsChunkedStreamTests.RandomBytes((int)NanoKv.Volume.CommitPins.From + 1234); // pinned on commit
        var put = new PutObjectRequest { BucketName = bucket, Key = "big.bin", InputStream = new MemoryStream(data), ContentType = "application/x-big" };
        put.Metadata.Add("color", "green");
        await s3.PutObjectAsync(put);
        await Infrastructure.TestCluster.WaitUntilAsync(() => Pinned() > pinnedBefore, TimeSpan.FromSeconds(30), "the new blob verified and pinned on the replica reads go to");

        using var got = await s3.GetObjectAsync(bucket, "big.bin");
        Assert.Equal("application/x-big", got.Headers.ContentType);
        Assert.Equal("green", got.Metadata["color"]);
        Assert.Equal($"\"{Convert.ToHexStringLower(MD5.HashData(data))}\"", got.ETag);
        Assert.Equal(data.Length, got.ContentLength);
        Assert.Equal(data, await ReadAsync(got));
        // Counted once the client acknowledged the last byte, which the SDK may finish reading first.
        await Infrastructure.TestCluster.WaitUntilAsync(() => handed.Value == handedBefore + 1, TimeSpan.FromSeconds(30), "the GET counted as handed off");
    }

    [Fact]
    public async Task RangesSuffixesClampingAndUnsatisfiable()
    {
        var (s3, bucket) = await BucketAsync("ranges");
        using var _ = s3;
        var data = AwsChunkedStreamTests.RandomBytes(100_000);
        await s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = "r", InputStream = new MemoryStream(data) });
        foreach (var (range, from, to) in new[] { ("bytes=10-19", 10, 19), ("bytes=-500", 99_500, 99_999), ("bytes=99990-200000", 99_990, 99_999), ("bytes=50000-", 50_000, 99_999), ("bytes=-1000000", 0, 99_999) })
        {
            var req = new GetObjectRequest { BucketName = bucket, Key = "r", ByteRange = new ByteRange(range) };
            var r = await s3.GetObjectAsync(req);
            Assert.Equal(HttpStatusCode.PartialContent, r.HttpStatusCode);
            Assert.Equal($"bytes {from}-{to}/{data.Length}", r.ContentRange);
            Assert.Equal(data[from..(to + 1)], await ReadAsync(r));
        }
        var bad = new GetObjectRequest { BucketName = bucket, Key = "r", ByteRange = new ByteRange("bytes=100000-100010") };
        var e = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => s3.GetObjectAsync(bad));
        Assert.Equal("InvalidRange", e.ErrorCode);
        Assert.Equal(HttpStatusCode.RequestedRangeNotSatisfiable, e.StatusCode);
    }

    [Fact]
    public async Task ConditionalReadsAndWrites()
    {
        var (s3, bucket) = await BucketAsync("cond");
        using var _ = s3;
        var first = await s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = "c", ContentBody = "one" });
        var etag = first.ETag;

        (await s3.GetObjectAsync(new GetObjectRequest { BucketName = bucket, Key = "c", EtagToMatch = etag })).Dispose();
        var pre = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => s3.GetObjectAsync(new GetObjectRequest { BucketName = bucket, Key = "c", EtagToMatch = "\"0000\"" }));
        Assert.Equal(HttpStatusCode.PreconditionFailed, pre.StatusCode);
        var notModified = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => s3.GetObjectAsync(new GetObjectRequest { BucketName = bucket, Key = "c", EtagToNotMatch = etag }));
        Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);
        var since = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => s3.GetObjectAsync(new GetObjectRequest { BucketName = bucket, Key = "c", ModifiedSinceDate = DateTime.UtcNow.AddMinutes(5) }));
        Assert.Equal(HttpStatusCode.NotModified, since.StatusCode);
        var unmodified = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => s3.GetObjectAsync(new GetObjectRequest { BucketName = bucket, Key = "c", UnmodifiedSinceDate = DateTime.UtcNow.AddDays(-1) }));
        Assert.Equal(HttpStatusCode.PreconditionFailed, unmodified.StatusCode);

        // Write-once and compare-and-swap.
        var once = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = "c", ContentBody = "two", IfNoneMatch = "*" }));
        Assert.Equal("PreconditionFailed", once.ErrorCode);
        Assert.Equal(HttpStatusCode.PreconditionFailed, once.StatusCode);
        await s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = "fresh", ContentBody = "new", IfNoneMatch = "*" });
        var swapped = await s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = "c", ContentBody = "three", IfMatch = etag });
        var stale = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = "c", ContentBody = "four", IfMatch = etag }));
        Assert.Equal(HttpStatusCode.PreconditionFailed, stale.StatusCode);
        var now = await s3.GetObjectAsync(bucket, "c");
        Assert.Equal(swapped.ETag, now.ETag);
        Assert.Equal("three", Encoding.UTF8.GetString(await ReadAsync(now)));
    }

    [Fact]
    public async Task ContentMd5IsCheckedAndNothingIsStoredOnMismatch()
    {
        var (s3, bucket) = await BucketAsync("md5");
        using var _ = s3;
        var good = Encoding.UTF8.GetBytes("checked body");
        await s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = "m", InputStream = new MemoryStream(good), MD5Digest = Convert.ToBase64String(MD5.HashData(good)) });
        var e = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => s3.PutObjectAsync(new PutObjectRequest
        {
            BucketName = bucket,
            Key = "m",
            InputStream = new MemoryStream(Encoding.UTF8.GetBytes("other body!!")),
            MD5Digest = Convert.ToBase64String(MD5.HashData(good)),
        }));
        Assert.Equal("BadDigest", e.ErrorCode);
        Assert.Equal(good, await ReadAsync(await s3.GetObjectAsync(bucket, "m")));
    }

    [Fact]
    public async Task ClientChecksumIsStoredAndReturnedWithChecksumModeEnabled()
    {
        var (s3, bucket) = await BucketAsync("cksum");
        using var _ = s3;
        var data = AwsChunkedStreamTests.RandomBytes(300_000);
        var sha = Convert.ToBase64String(SHA256.HashData(data));
        var put = await s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = "s", InputStream = new MemoryStream(data), ChecksumAlgorithm = ChecksumAlgorithm.SHA256 });
        Assert.Equal(sha, put.ChecksumSHA256);

        // GetObject with ChecksumMode ENABLED: the stored value comes back and the SDK validates the body against it.
        using (var get = await s3.GetObjectAsync(new GetObjectRequest { BucketName = bucket, Key = "s", ChecksumMode = ChecksumMode.ENABLED }))
        {
            Assert.Equal(sha, get.ChecksumSHA256);
            Assert.Equal(data, await ReadAsync(get));
        }
        var head = await s3.GetObjectMetadataAsync(new GetObjectMetadataRequest { BucketName = bucket, Key = "s", ChecksumMode = ChecksumMode.ENABLED });
        Assert.Equal(sha, head.ChecksumSHA256);
        // Not asked for: not sent; a range is not the whole object: not sent either.
        var plain = await s3.GetObjectMetadataAsync(bucket, "s");
        Assert.Null(plain.ChecksumSHA256);
        using (var range = await s3.GetObjectAsync(new GetObjectRequest { BucketName = bucket, Key = "s", ChecksumMode = ChecksumMode.ENABLED, ByteRange = new ByteRange(0, 9) }))
        {
            Assert.Null(range.ChecksumSHA256);
            Assert.Equal(data[..10], await ReadAsync(range));
        }
        // The SDK's default PutObject (CRC32 in a signed trailer) is stored the same way.
        await s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = "c", InputStream = new MemoryStream(data) });
        var crc = await s3.GetObjectMetadataAsync(new GetObjectMetadataRequest { BucketName = bucket, Key = "c", ChecksumMode = ChecksumMode.ENABLED });
        Assert.Equal(Convert.ToBase64String(System.IO.Hashing.Crc32.Hash(data).Reverse().ToArray()), crc.ChecksumCRC32);
    }

    [Fact]
    public async Task OverwriteDeleteAndDeleteObjectsQuietAndVerbose()
    {
        var (s3, bucket) = await BucketAsync("del");
        using var _ = s3;
        await s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = "o", ContentBody = "v1" });
        await s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = "o", ContentBody = "v2" });
        Assert.Equal("v2", Encoding.UTF8.GetString(await ReadAsync(await s3.GetObjectAsync(bucket, "o"))));
        Assert.Equal(HttpStatusCode.NoContent, (await s3.DeleteObjectAsync(bucket, "o")).HttpStatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await s3.DeleteObjectAsync(bucket, "o")).HttpStatusCode);

        for (var i = 0; i < 5; i++)
        {
            await s3.PutObjectAsync(new PutObjectRequest { BucketName = bucket, Key = $"k{i}", ContentBody = "x" });
        }
        var verbose = await s3.DeleteObjectsAsync(new Amazon.S3.Model.DeleteObjectsRequest { BucketName = bucket, Objects = [new() { Key = "k0" }, new() { Key = "k1" }, new() { Key = "absent" }] });
        Assert.Equal(["absent", "k0", "k1"], verbose.DeletedObjects.Select(d => d.Key).Order());
        var quiet = await s3.DeleteObjectsAsync(new Amazon.S3.Model.DeleteObjectsRequest { BucketName = bucket, Quiet = true, Objects = [new() { Key = "k2" }, new() { Key = "k3" }] });
        Assert.Empty(quiet.DeletedObjects ?? []);
        var left = await s3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = bucket });
        Assert.Equal(["k4"], left.S3Objects.Select(o => o.Key));
    }

    [Fact]
    public async Task CopyObjectWithCopyAndReplaceDirectivesAndSourceConditions()
    {
        var (s3, bucket) = await BucketAsync("copy");
        using var _ = s3;
        var data = AwsChunkedStreamTests.RandomBytes(300_000);
        var src = new PutObjectRequest { BucketName = bucket, Key = "src/a b", InputStream = new MemoryStream(data), ContentType = "image/png" };
        src.Metadata.Add("m", "1");
        var put = await s3.PutObjectAsync(src);

        var copied = await s3.CopyObjectAsync(new CopyObjectRequest { SourceBucket = bucket, SourceKey = "src/a b", DestinationBucket = bucket, DestinationKey = "dst/copy" });
        Assert.Equal(put.ETag, copied.ETag);
        var got = await s3.GetObjectAsync(bucket, "dst/copy");
        Assert.Equal("image/png", got.Headers.ContentType);
        Assert.Equal("1", got.Metadata["m"]);
        Assert.Equal(data, await ReadAsync(got));

        var replace = new CopyObjectRequest { SourceBucket = bucket, SourceKey = "src/a b", DestinationBucket = bucket, DestinationKey = "dst/replaced", MetadataDirective = S3MetadataDirective.REPLACE, ContentType = "text/plain" };
        replace.Metadata.Add("m", "2");
        await s3.CopyObjectAsync(replace);
        var head = await s3.GetObjectMetadataAsync(bucket, "dst/replaced");
        Assert.Equal("text/plain", head.Headers.ContentType);
        Assert.Equal("2", head.Metadata["m"]);

        var failed = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => s3.CopyObjectAsync(new CopyObjectRequest { SourceBucket = bucket, SourceKey = "src/a b", DestinationBucket = bucket, DestinationKey = "dst/x", ETagToMatch = "\"00\"" }));
        Assert.Equal(HttpStatusCode.PreconditionFailed, failed.StatusCode);
        var self = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => s3.CopyObjectAsync(new CopyObjectRequest { SourceBucket = bucket, SourceKey = "src/a b", DestinationBucket = bucket, DestinationKey = "src/a b" }));
        Assert.Equal("InvalidRequest", self.ErrorCode);
    }

    [Fact]
    public async Task PresignedGetAndPutWithPlainHttpClient()
    {
        var (s3, bucket) = await BucketAsync("presign");
        using var _ = s3;
        using var http = new HttpClient();
        var putUrl = await s3.GetPreSignedURLAsync(new GetPreSignedUrlRequest { BucketName = bucket, Key = "p/ré sumé.txt", Verb = HttpVerb.PUT, Expires = DateTime.UtcNow.AddMinutes(5), Protocol = Protocol.HTTP });
        using (var put = await http.PutAsync(putUrl, new StringContent("presigned body")))
        {
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        }
        var getUrl = await s3.GetPreSignedURLAsync(new GetPreSignedUrlRequest { BucketName = bucket, Key = "p/ré sumé.txt", Verb = HttpVerb.GET, Expires = DateTime.UtcNow.AddMinutes(5), Protocol = Protocol.HTTP });
        Assert.Equal("presigned body", await http.GetStringAsync(getUrl));

        var expiredUrl = await s3.GetPreSignedURLAsync(new GetPreSignedUrlRequest { BucketName = bucket, Key = "p/ré sumé.txt", Verb = HttpVerb.GET, Expires = DateTime.UtcNow.AddSeconds(1), Protocol = Protocol.HTTP });
        await Infrastructure.TestCluster.WaitUntilAsync(async () =>
        {
            using var r = await http.GetAsync(expiredUrl);
            return r.StatusCode == HttpStatusCode.Forbidden && (await r.Content.ReadAsStringAsync()).Contains("expired", StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(30), "the presigned URL expires");
    }
}
