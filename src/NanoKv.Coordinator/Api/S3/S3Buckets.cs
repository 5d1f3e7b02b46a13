using NanoKv.Coordinator.Core;
using NanoKv.S3;
using NanoKv.S3.Xml;

namespace NanoKv.Coordinator.Api.S3;

/// <summary>ListBuckets, CreateBucket, DeleteBucket, GetBucketLocation (HeadBucket is the router's ownership check).</summary>
public sealed class S3Buckets(ObjectStore store, S3Options options)
{
    /// <summary>The caller's buckets only (S3 lists the buckets you own).</summary>
    public Task ListBucketsAsync(S3Context s3) =>
        s3.WriteXmlAsync(S3Responses.ListBuckets(s3.User, store.ListBuckets()
            .Where(b => b.Owner == s3.User)
            .Select(b => new BucketEntry(b.Name, DateTimeOffset.FromUnixTimeMilliseconds(b.CreatedMs)))));

    public async Task CreateBucketAsync(S3Context s3)
    {
        BucketNames.Validate(s3.Bucket);
        // The optional body names a region; nanokv has one, so any constraint is accepted and none is stored.
        await using var body = S3Body.Open(s3);
        _ = S3Requests.ParseCreateBucket(await S3Requests.LoadAsync(body.Stream, s3.Aborted));
        var created = await store.CreateBucketAsync(s3.Bucket, s3.User);
        if (!created.Ok)
        {
            throw S3StoreErrors.ToS3(created.Error!);
        }
        s3.Response.Headers.Location = "/" + s3.Bucket;
    }

    public async Task DeleteBucketAsync(S3Context s3)
    {
        if (await store.DeleteBucketAsync(s3.Bucket) is { } failed)
        {
            throw S3StoreErrors.ToS3(failed);
        }
        s3.Response.StatusCode = 204;
    }

    public Task GetLocationAsync(S3Context s3) => s3.WriteXmlAsync(S3Responses.LocationConstraint(options.Region));
}
