using System.Security.Cryptography;
using System.Text;
using NanoKv.Coordinator.Core;
using NanoKv.Metadata;
using NanoKv.Tests.Infrastructure;
using static NanoKv.Tests.Infrastructure.StoreCalls;

namespace NanoKv.Tests.S3Model;

/// <summary>The S3 object model of the transport-free store, exercised without HTTP in front of it.</summary>
public sealed class ObjectStoreS3Tests
{
    [Fact]
    public async Task BucketsBelongToTheirCreatorAndOnlyEmptyOnesAreDeleted()
    {
        await using var c = await TestCluster.StartAsync();
        var s = c.Coordinator.Objects;
        Assert.True((await s.CreateBucketAsync("photos", "alice")).Ok);
        Assert.Equal(StoreErrorKind.BucketOwnedByYou, (await s.CreateBucketAsync("photos", "alice")).Error!.Kind);
        Assert.Equal(StoreErrorKind.BucketExists, (await s.CreateBucketAsync("photos", "bob")).Error!.Kind);
        Assert.True((await PutObjectAsync(s, "photos", "a.jpg", Bytes(10, 1))).Ok);
        Assert.Equal(StoreErrorKind.BucketNotEmpty, (await s.DeleteBucketAsync("photos"))!.Kind);
        await s.DeleteObjectAsync("photos", Key("a.jpg"));
        Assert.Null(await s.DeleteBucketAsync("photos"));
        Assert.Equal(StoreErrorKind.NoSuchBucket, (await s.DeleteBucketAsync("photos"))!.Kind);
        Assert.Equal(StoreErrorKind.NoSuchBucket, (await PutObjectAsync(s, "photos", "b", Bytes(1, 1))).Error!.Kind);
    }

    [Fact]
    public async Task AnOverwriteSwitchesAtomicallyAndNeverDeletesUnderAReader()
    {
        await using var c = await TestCluster.StartAsync();
        var s = c.Coordinator.Objects;
        await s.CreateBucketAsync("b", "alice");
        var v1 = Bytes(300_000, 1);
        var v2 = Bytes(200_000, 2);
        var first = (await PutObjectAsync(s, "b", "k", v1)).Value!;
        using (var reader = (await s.OpenObjectAsync("b", Key("k")))!)
        {
            var second = (await PutObjectAsync(s, "b", "k", v2)).Value!;
            Assert.NotEqual(first.Etag, second.Etag);
            // The old blob is still readable through the handle opened before the switch.
            Assert.Equal(v1, await ReadAllAsync(s, reader));
            Assert.Equal(ObjectState.Committed, s.Meta.Get(first.Blobs[0].BlobKey)!.State);
        }
        // Released: the replaced blob is deleted now.
        await Until(() => s.Meta.Get(first.Blobs[0].BlobKey)?.State == ObjectState.Tombstoned, "blobs deleted");
        using var now = (await s.OpenObjectAsync("b", Key("k")))!;
        Assert.Equal(v2, await ReadAllAsync(s, now));
    }

    [Fact]
    public async Task ConcurrentIfNoneMatchWritesHaveExactlyOneWinner()
    {
        await using var c = await TestCluster.StartAsync();
        var s = c.Coordinator.Objects;
        await s.CreateBucketAsync("b", "alice");
        var bodies = Enumerable.Range(1, 4).Select(i => Bytes(100_000, (byte)i)).ToArray();
        var results = await Task.WhenAll(bodies.Select(b => PutObjectAsync(s, "b", "once", b, WriteCondition.IfNoneMatch))).WaitAsync(CallTimeout);
        Assert.Single(results, r => r.Ok);
        Assert.All(results.Where(r => !r.Ok), r => Assert.Equal(StoreErrorKind.PreconditionFailed, r.Error!.Kind));
        var winner = results.Single(r => r.Ok).Value!;
        Assert.Equal(winner.Etag, s.HeadObject("b", Key("once"))!.Etag);
        // If-Match is a compare-and-swap on the ETag.
        Assert.Equal(StoreErrorKind.PreconditionFailed, (await PutObjectAsync(s, "b", "once", Bytes(5, 9), WriteCondition.IfMatch, "0123")).Error!.Kind);
        Assert.True((await PutObjectAsync(s, "b", "once", Bytes(5, 9), WriteCondition.IfMatch, winner.Etag)).Ok);
    }

    [Fact]
    public async Task ListingRollsUpCommonPrefixesAndPagesInByteOrder()
    {
        await using var c = await TestCluster.StartAsync(volumes: 1, replicas: 1);
        var s = c.Coordinator.Objects;
        await s.CreateBucketAsync("b", "alice");
        string[] keys = ["a/1", "a/2", "a/3", "b", "c/x/1", "c/y", "d"];
        foreach (var k in keys)
        {
            Assert.True((await PutObjectAsync(s, "b", k, Bytes(10, 1))).Ok);
        }
        var all = s.ListObjects("b", [], null, null, 1000);
        Assert.Equal(keys, all.Objects.Select(o => Encoding.UTF8.GetString(o.Key)));
        var top = s.ListObjects("b", [], Key("/"), null, 1000);
        Assert.Equal(["b", "d"], top.Objects.Select(o => Encoding.UTF8.GetString(o.Key)));
        Assert.Equal(["a/", "c/"], top.CommonPrefixes.Select(Encoding.UTF8.GetString));
        // Pages of two entries each, continuing from the marker (an object or a common prefix).
        var seen = new List<string>();
        byte[]? marker = null;
        for (var page = 0; page < 10; page++)
        {
            var p = s.ListObjects("b", [], Key("/"), marker, 2);
            seen.AddRange(p.Objects.Select(o => Encoding.UTF8.GetString(o.Key)).Concat(p.CommonPrefixes.Select(Encoding.UTF8.GetString)));
            if (!p.Truncated)
            {
                break;
            }
            marker = p.NextMarker;
        }
        Assert.Equal(["a/", "b", "c/", "d"], seen.Order(StringComparer.Ordinal));
        var under = s.ListObjects("b", Key("c/"), Key("/"), null, 1000);
        Assert.Equal(["c/y"], under.Objects.Select(o => Encoding.UTF8.GetString(o.Key)));
        Assert.Equal(["c/x/"], under.CommonPrefixes.Select(Encoding.UTF8.GetString));
    }

    [Fact]
    public async Task AMultipartObjectReadsAsOneStreamAcrossPartBoundaries()
    {
        await using var c = await TestCluster.StartAsync();
        var s = c.Coordinator.Objects;
        await s.CreateBucketAsync("b", "alice");
        var upload = s.CreateMultipartUpload("b", Key("big"), "alice", new ObjectAttributes { ContentType = "video/mp4" }).Value!;
        var p1 = Bytes((int)ObjectStore.MinPartSize, 3);
        var p2 = Bytes(1000, 4);
        var r2 = await PartAsync(s, upload.UploadId, 2, p2);
        var r1 = await PartAsync(s, upload.UploadId, 1, p1);
        Assert.Equal(StoreErrorKind.InvalidPartOrder, (await s.CompleteMultipartUploadAsync("b", upload.UploadId, [(2, r2.Md5Etag), (1, r1.Md5Etag)])).Error!.Kind);
        Assert.Equal(StoreErrorKind.InvalidPart, (await s.CompleteMultipartUploadAsync("b", upload.UploadId, [(1, "00"), (2, r2.Md5Etag)])).Error!.Kind);
        var done = (await s.CompleteMultipartUploadAsync("b", upload.UploadId, [(1, r1.Md5Etag), (2, r2.Md5Etag)])).Value!;
        Assert.EndsWith("-2", done.Etag);
        Assert.Null(s.GetUpload("b", upload.UploadId));
        Assert.Empty(s.ListParts(upload.UploadId));
        using var h = (await s.OpenObjectAsync("b", Key("big")))!;
        Assert.Equal("video/mp4", h.Record.Attributes.ContentType);
        var whole = p1.Concat(p2).ToArray();
        Assert.Equal(whole, await ReadAllAsync(s, h));
        var from = p1.Length - 10;
        Assert.Equal(whole[from..(from + 20)], await ReadAllAsync(s, h, from, from + 19));
    }

    [Fact]
    public async Task PartsSmallerThanTheMinimumAreRefusedExceptTheLast()
    {
        await using var c = await TestCluster.StartAsync(volumes: 1, replicas: 1);
        var s = c.Coordinator.Objects;
        await s.CreateBucketAsync("b", "alice");
        var upload = s.CreateMultipartUpload("b", Key("k"), "alice", new ObjectAttributes()).Value!;
        var r1 = await PartAsync(s, upload.UploadId, 1, Bytes(1000, 1));
        var r2 = await PartAsync(s, upload.UploadId, 2, Bytes(1000, 2));
        Assert.Equal(StoreErrorKind.EntityTooSmall, (await s.CompleteMultipartUploadAsync("b", upload.UploadId, [(1, r1.Md5Etag), (2, r2.Md5Etag)])).Error!.Kind);
        Assert.Null(await s.AbortMultipartUploadAsync("b", upload.UploadId));
        Assert.Equal(StoreErrorKind.NoSuchUpload, (await s.CompleteMultipartUploadAsync("b", upload.UploadId, [(1, r1.Md5Etag)])).Error!.Kind);
        await Until(() => s.Meta.Get(r1.BlobKey)?.State == ObjectState.Tombstoned && s.Meta.Get(r2.BlobKey)?.State == ObjectState.Tombstoned, "blobs deleted");
    }

    private static async Task<PartRecord> PartAsync(ObjectStore s, string uploadId, int part, byte[] body)
    {
        var r = await s.UploadPartAsync(new PartPut("b", uploadId, part, new MemoryStream(body), body.Length) { Md5 = () => Convert.ToHexStringLower(MD5.HashData(body)) }, CancellationToken.None).WaitAsync(CallTimeout);
        Assert.True(r.Ok, r.Error?.Detail);
        return r.Value!;
    }

    private static async Task<byte[]> ReadAllAsync(ObjectStore s, ObjectHandle h, long start = 0, long? end = null)
    {
        var sink = new MemorySink();
        var failed = await s.ReadObjectAsync(h, start, end ?? h.Record.Size - 1, sink, CancellationToken.None).WaitAsync(CallTimeout);
        Assert.Null(failed);
        Assert.False(sink.Aborted);
        return sink.Buffer.ToArray();
    }
}
