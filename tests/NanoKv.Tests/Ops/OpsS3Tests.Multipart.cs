using System.Security.Cryptography;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using NanoKv.Coordinator.Api.S3;
using NanoKv.Coordinator.Core;
using NanoKv.Core;
using NanoKv.Metadata;
using NanoKv.Ops;
using NanoKv.S3;
using NanoKv.S3.Xml;
using NanoKv.Tests.Infrastructure;
using static NanoKv.Tests.Infrastructure.StoreCalls;

namespace NanoKv.Tests.Ops;

/// <summary>rebuild brings multipart objects back from the manifests CompleteMultipartUpload leaves on the volumes.</summary>
public sealed partial class OpsS3Tests
{
    private const int MiB = 1024 * 1024;
    private const string Ak = "NKVTESTALICE00000000";
    private const string Sk = "alice/secret+key0000000000000000000000000";

    [Fact]
    public async Task RebuildBringsBackAMultipartObjectWithItsBytesETagAttributesAndOwner()
    {
        await using var c = await TestCluster.StartAsync(configure: o => o with { S3 = new S3Options { Port = 0, Users = S3Users.Parse($"{Ak}:{Sk}") } });
        byte[][] parts = [Bytes(5 * MiB, 11), Bytes(5 * MiB, 12), Bytes(1000, 13)];
        var whole = parts.SelectMany(p => p).ToArray();
        string etag;
        using (var s3 = Client(c))
        {
            await s3.PutBucketAsync("mpbucket").WaitAsync(CallTimeout);
            var init = new InitiateMultipartUploadRequest { BucketName = "mpbucket", Key = "big/object.bin", ContentType = "application/x-nanokv-test" };
            init.Headers.CacheControl = "max-age=60";
            init.Headers.ContentDisposition = "attachment; filename=\"o.bin\"";
            init.Metadata["color"] = "blue";
            var upload = await s3.InitiateMultipartUploadAsync(init).WaitAsync(CallTimeout);
            var etags = new List<PartETag>();
            for (var i = 0; i < parts.Length; i++)
            {
                var r = await s3.UploadPartAsync(new UploadPartRequest { BucketName = "mpbucket", Key = "big/object.bin", UploadId = upload.UploadId, PartNumber = i + 1, InputStream = new MemoryStream(parts[i]) }).WaitAsync(CallTimeout);
                etags.Add(new PartETag(i + 1, r.ETag));
            }
            var done = await s3.CompleteMultipartUploadAsync(new CompleteMultipartUploadRequest { BucketName = "mpbucket", Key = "big/object.bin", UploadId = upload.UploadId, PartETags = etags }).WaitAsync(CallTimeout);
            etag = ETags.Unquote(done.ETag);
            Assert.Equal(ETags.Multipart(etags.Select(e => e.ETag).ToList()), etag);
            Assert.EndsWith("-3", etag, StringComparison.Ordinal);
        }
        var s = c.Coordinator.Objects;
        var manifestKey = s.HeadObject("mpbucket", Key("big/object.bin"))!.Manifest!.BlobKey;
        Assert.True(BlobKeys.TryParseManifest(manifestKey, out _, out _, out _));
        Assert.Equal(ObjectState.Committed, s.Meta.Get(manifestKey)!.State);
        // gc must count the manifest as referenced while the object exists.
        var gcBefore = await OpsCli.RunLiveAsync(c.Url, Opts("gc", c), c.Secret, quiet: true, CancellationToken.None).WaitAsync(CallTimeout);
        Assert.Equal(0, gcBefore.Count("s3_orphan_blobs"));

        await c.StopCoordinatorAsync();
        TempDir.Delete(c.Coordinator.Options.DbDir);
        var report = await OpsCli.RunOfflineAsync(c.Coordinator.Options.DbDir, Opts("rebuild", c), null, null, quiet: true, CancellationToken.None).WaitAsync(CallTimeout);
        await c.StartCoordinatorAsync();

        Assert.True(report.Clean, string.Join("\n", report.Details));
        Assert.Equal(1, report.Count("s3_multipart_restored"));
        Assert.Equal(0, report.Count("s3_objects_restored"));
        Assert.Equal(1, report.Count("s3_buckets_restored"));
        s = c.Coordinator.Objects;
        Assert.Equal(Ak, s.GetBucket("mpbucket")!.Owner); // from the manifest: the owner can use the bucket again
        using (var s3 = Client(c))
        {
            using (var got = await s3.GetObjectAsync("mpbucket", "big/object.bin").WaitAsync(CallTimeout))
            {
                Assert.Equal(etag, ETags.Unquote(got.ETag));
                Assert.Equal(whole.Length, got.ContentLength);
                Assert.Equal("application/x-nanokv-test", got.Headers.ContentType);
                Assert.Equal("max-age=60", got.Headers.CacheControl);
                Assert.Equal("attachment; filename=\"o.bin\"", got.Headers.ContentDisposition);
                Assert.Equal("blue", got.Metadata["x-amz-meta-color"]);
                Assert.Equal(SHA256.HashData(whole), await SHA256.HashDataAsync(got.ResponseStream));
            }
            // A range across the boundary of parts 1 and 2.
            var from = (5 * MiB) - 100;
            var to = (5 * MiB) + 99;
            using (var ranged = await s3.GetObjectAsync(new GetObjectRequest { BucketName = "mpbucket", Key = "big/object.bin", ByteRange = new Amazon.S3.Model.ByteRange(from, to) }).WaitAsync(CallTimeout))
            {
                using var ms = new MemoryStream();
                await ranged.ResponseStream.CopyToAsync(ms);
                Assert.Equal(whole[from..(to + 1)], ms.ToArray());
            }

            var verify = await OpsCli.RunLiveAsync(c.Url, Opts("verify", c), c.Secret, quiet: true, CancellationToken.None).WaitAsync(CallTimeout);
            Assert.Equal(0, verify.Count("s3_dangling_records"));
            var gc = await OpsCli.RunLiveAsync(c.Url, Opts("gc", c), c.Secret, quiet: true, CancellationToken.None).WaitAsync(CallTimeout);
            Assert.Equal(0, gc.Count("s3_orphan_blobs")); // the restored record refers to the parts and the manifest

            // Deleting the object deletes its manifest with its parts.
            var restored = s.HeadObject("mpbucket", Key("big/object.bin"))!;
            Assert.Equal(manifestKey, restored.Manifest!.BlobKey);
            await s3.DeleteObjectAsync("mpbucket", "big/object.bin").WaitAsync(CallTimeout);
            await Until(() => restored.OwnedBlobs().All(b => s.Meta.Get(b.BlobKey)?.State == ObjectState.Tombstoned), "parts and manifest deleted");
        }
    }

    [Fact]
    public async Task RebuildReportsAManifestWithAMissingPartAndTheNewestOfBlobAndManifestWins()
    {
        await using var c = await TestCluster.StartAsync();
        var s = c.Coordinator.Objects;
        await s.CreateBucketAsync("b", "alice");
        // A multipart object whose last part's blob is then lost.
        var holed = await CompleteAsync(s, "b", "holed", [Bytes(5 * MiB, 1), Bytes(100, 2)]);
        await s.DeleteAsync(holed.Blobs[1].BlobKey, CancellationToken.None).WaitAsync(CallTimeout);
        Assert.Equal(ObjectState.Tombstoned, s.Meta.Get(holed.Blobs[1].BlobKey)!.State);
        // A multipart object, then a newer single-part blob (a PUT whose coordinator died before its switch).
        var blobWins = await CompleteAsync(s, "b", "newer-blob", [Bytes(5 * MiB, 3), Bytes(10, 4)]);
        var single = Bytes(300, 5);
        var late = BlobKeys.ForObject("b", Key("newer-blob"), blobWins.Version + 1_000_000);
        Assert.True((await s.PutAsync(new PutRequest(late, new MemoryStream(single), single.Length), CancellationToken.None).WaitAsync(CallTimeout)).Ok);
        // An old single-part blob, then a multipart object: the manifest is newer.
        var early = BlobKeys.ForObject("b", Key("newer-manifest"), 42);
        Assert.True((await s.PutAsync(new PutRequest(early, new MemoryStream(Bytes(200, 6)), 200), CancellationToken.None).WaitAsync(CallTimeout)).Ok);
        var manifestWins = await CompleteAsync(s, "b", "newer-manifest", [Bytes(5 * MiB, 7), Bytes(10, 8)]);

        await c.StopCoordinatorAsync();
        TempDir.Delete(c.Coordinator.Options.DbDir);
        var report = await OpsCli.RunOfflineAsync(c.Coordinator.Options.DbDir, Opts("rebuild", c), null, null, quiet: true, CancellationToken.None).WaitAsync(CallTimeout);
        await c.StartCoordinatorAsync();

        Assert.False(report.Clean);
        Assert.Equal(1, report.Count("s3_manifests_incomplete"));
        Assert.Contains(report.Details, d => d.Contains("b/holed", StringComparison.Ordinal) && d.Contains("1 of 2 parts", StringComparison.Ordinal));
        Assert.Equal(1, report.Count("s3_multipart_restored"));
        Assert.Equal(1, report.Count("s3_objects_restored"));
        s = c.Coordinator.Objects;
        Assert.Null(s.HeadObject("b", Key("holed")));
        var restoredSingle = s.HeadObject("b", Key("newer-blob"))!;
        Assert.Equal(Convert.ToHexStringLower(MD5.HashData(single)), restoredSingle.Etag);
        Assert.Equal(late, restoredSingle.Blobs.Single().BlobKey);
        var restoredMultipart = s.HeadObject("b", Key("newer-manifest"))!;
        Assert.Equal(manifestWins.Etag, restoredMultipart.Etag);
        Assert.Equal(manifestWins.Size, restoredMultipart.Size);
        Assert.Equal(manifestWins.Blobs.Select(b => Convert.ToHexString(b.BlobKey)), restoredMultipart.Blobs.Select(b => Convert.ToHexString(b.BlobKey)));
    }

    private static AmazonS3Client Client(TestCluster c) => new(new BasicAWSCredentials(Ak, Sk), new AmazonS3Config
    {
        ServiceURL = c.Coordinator.S3Url,
        ForcePathStyle = true,
        AuthenticationRegion = "us-east-1",
        MaxErrorRetry = 0,
        Timeout = TimeSpan.FromMinutes(2),
    });

    /// <summary>A multipart object through the store: one part per body, completed in order.</summary>
    private static async Task<S3ObjectRecord> CompleteAsync(ObjectStore s, string bucket, string key, byte[][] parts)
    {
        var upload = s.CreateMultipartUpload(bucket, Key(key), "alice", new NanoKv.Metadata.ObjectAttributes()).Value!;
        var listed = new List<(int, string)>();
        for (var i = 0; i < parts.Length; i++)
        {
            var md5 = Convert.ToHexStringLower(MD5.HashData(parts[i]));
            var part = await s.UploadPartAsync(new PartPut(bucket, upload.UploadId, i + 1, new MemoryStream(parts[i]), parts[i].Length) { Md5 = () => md5 }, CancellationToken.None).WaitAsync(CallTimeout);
            Assert.True(part.Ok, part.Error?.Detail);
            listed.Add((i + 1, md5));
        }
        var done = await s.CompleteMultipartUploadAsync(bucket, upload.UploadId, listed).WaitAsync(CallTimeout);
        Assert.True(done.Ok, done.Error?.Detail);
        return done.Value!;
    }
}
