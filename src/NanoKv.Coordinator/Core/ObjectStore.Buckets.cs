using System.Text;
using NanoKv.Metadata;

namespace NanoKv.Coordinator.Core;

/// <summary>S3 buckets: named containers owned by the access key that created them.</summary>
public sealed partial class ObjectStore
{
    public BucketRecord? GetBucket(string name) => store.GetRecord<BucketRecord>(RecordTable.Buckets, Encoding.UTF8.GetBytes(name));

    /// <summary>All buckets in name order.</summary>
    public List<BucketRecord> ListBuckets() => store.ScanRecords<BucketRecord>(RecordTable.Buckets, []).Select(b => b.Value).ToList();

    /// <summary>
    /// Creates a bucket; the name rules are the front end's (S3's), ownership and uniqueness are here. A
    /// bucket restored by rebuild has no owner until a user creates it again (claims it).
    /// </summary>
    public async Task<StoreResult<BucketRecord>> CreateBucketAsync(string name, string owner)
    {
        var key = Encoding.UTF8.GetBytes(name);
        using (await store.LockAsync([.. "bucket:"u8, .. key]))
        {
            if (GetBucket(name) is { } existing && existing.Owner.Length > 0)
            {
                return existing.Owner == owner
                    ? new StoreError(StoreErrorKind.BucketOwnedByYou, $"you already own bucket {name}")
                    : new StoreError(StoreErrorKind.BucketExists, $"bucket {name} exists and belongs to another user");
            }
            var bucket = new BucketRecord(name, owner, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            store.PutRecord(RecordTable.Buckets, key, bucket);
            return bucket;
        }
    }

    /// <summary>Deletes an empty bucket (no objects, no multipart uploads in progress).</summary>
    public async Task<StoreError?> DeleteBucketAsync(string name)
    {
        var key = Encoding.UTF8.GetBytes(name);
        using (await store.LockAsync([.. "bucket:"u8, .. key]))
        {
            if (GetBucket(name) is null)
            {
                return new StoreError(StoreErrorKind.NoSuchBucket, $"bucket {name} does not exist");
            }
            var prefix = Encoding.UTF8.GetBytes(name + "/");
            if (store.ScanRecords<S3ObjectRecord>(RecordTable.S3Objects, prefix).Any())
            {
                return new StoreError(StoreErrorKind.BucketNotEmpty, $"bucket {name} is not empty");
            }
            if (store.ScanRecords<MultipartRecord>(RecordTable.Uploads, prefix).Any())
            {
                return new StoreError(StoreErrorKind.BucketNotEmpty, $"bucket {name} has multipart uploads in progress; abort them first");
            }
            store.DeleteRecord(RecordTable.Buckets, key);
            return null;
        }
    }
}
