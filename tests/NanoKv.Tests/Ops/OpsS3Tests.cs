using System.Security.Cryptography;
using System.Text;
using NanoKv.Coordinator.Core;
using NanoKv.Core;
using NanoKv.Metadata;
using NanoKv.Ops;
using NanoKv.Tests.Infrastructure;
using static NanoKv.Tests.Infrastructure.StoreCalls;

namespace NanoKv.Tests.Ops;

/// <summary>The ops commands cover S3 objects: rebuild brings them back, gc collects what no record refers to, verify finds dangling records.</summary>
public sealed partial class OpsS3Tests
{
    private static OpsOptions Opts(string command, TestCluster c) => new()
    {
        Command = command,
        Nodes = c.Volumes.Select(v => v!.Url).ToList(),
        Concurrency = 4,
        SweepTmpAgeSecs = 0,
        UploadTtlSecs = 0,
    };

    [Fact]
    public async Task RebuildBringsBackTheNewestVersionOfEachS3ObjectAndNotDeletedOnes()
    {
        await using var c = await TestCluster.StartAsync();
        var s = c.Coordinator.Objects;
        await s.CreateBucketAsync("b", "alice");
        var v2 = Bytes(70_000, 2);
        await PutObjectOkAsync(s, "b", "kept", Bytes(50_000, 1));
        await PutObjectOkAsync(s, "b", "kept", v2);
        await PutObjectOkAsync(s, "b", "gone", Bytes(10, 3));
        await s.DeleteObjectAsync("b", Key("gone"));
        var old = s.Meta.Scan().Where(m => BlobKeys.IsInternal(m.Key)).ToList();
        await Until(() => s.Meta.Scan().Count(m => BlobKeys.IsInternal(m.Key) && m.Meta.State == ObjectState.Tombstoned) == 2 && s.Meta.OwedDeleteKeys().Count == 0, "blobs deleted");

        await c.StopCoordinatorAsync();
        TempDir.Delete(c.Coordinator.Options.DbDir);
        var report = await OpsCli.RunOfflineAsync(c.Coordinator.Options.DbDir, Opts("rebuild", c), null, null, quiet: true, CancellationToken.None).WaitAsync(CallTimeout);
        await c.StartCoordinatorAsync();

        Assert.True(report.Clean, string.Join("\n", report.Details));
        Assert.Equal(1, report.Count("s3_objects_restored"));
        Assert.Equal(1, report.Count("s3_buckets_restored"));
        s = c.Coordinator.Objects;
        Assert.Equal("", s.GetBucket("b")!.Owner);
        Assert.Null(s.HeadObject("b", Key("gone")));
        using var h = (await s.OpenObjectAsync("b", Key("kept")))!;
        Assert.Equal(Convert.ToHexStringLower(MD5.HashData(v2)), h.Record.Etag);
        Assert.Equal(v2.Length, h.Record.Size);
    }

    [Fact]
    public async Task GcAbortsExpiredUploadsAndDeletesUnreferencedBlobsButNotLiveOnes()
    {
        await using var c = await TestCluster.StartAsync();
        var s = c.Coordinator.Objects;
        await s.CreateBucketAsync("b", "alice");
        var live = Bytes(20_000, 5);
        await PutObjectOkAsync(s, "b", "live", live);
        var upload = s.CreateMultipartUpload("b", Key("mp"), "alice", new ObjectAttributes()).Value!;
        var part = (await s.UploadPartAsync(new PartPut("b", upload.UploadId, 1, new MemoryStream(Bytes(1000, 6)), 1000) { Md5 = () => "00" }, CancellationToken.None).WaitAsync(CallTimeout)).Value!;
        // A blob committed by a PUT whose coordinator died before the record switch: nothing refers to it.
        var orphan = BlobKeys.ForObject("b", Key("crashed"), 42);
        Assert.True((await s.PutAsync(new PutRequest(orphan, new MemoryStream(Bytes(500, 7)), 500), CancellationToken.None).WaitAsync(CallTimeout)).Ok);

        var verify = await OpsCli.RunLiveAsync(c.Url, Opts("verify", c), c.Secret, quiet: true, CancellationToken.None).WaitAsync(CallTimeout);
        Assert.Equal(0, verify.Count("s3_dangling_records"));
        var report = await OpsCli.RunLiveAsync(c.Url, Opts("gc", c), c.Secret, quiet: true, CancellationToken.None).WaitAsync(CallTimeout);

        Assert.Equal(1, report.Count("s3_uploads_expired"));
        Assert.Equal(2, report.Count("s3_orphan_blobs")); // the aborted upload's part and the crashed PUT's blob
        Assert.Null(s.GetUpload("b", upload.UploadId));
        Assert.Equal(ObjectState.Tombstoned, s.Meta.Get(part.BlobKey)!.State);
        Assert.Equal(ObjectState.Tombstoned, s.Meta.Get(orphan)!.State);
        using var h = (await s.OpenObjectAsync("b", Key("live")))!;
        Assert.Equal(ObjectState.Committed, s.Meta.Get(h.Record.Blobs[0].BlobKey)!.State);
    }

}
