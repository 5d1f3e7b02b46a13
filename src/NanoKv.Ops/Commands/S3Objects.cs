using System.Security.Cryptography;
using System.Text;
using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Ops;

/// <summary>
/// What the ops commands do for S3 objects beyond their blobs (which verify, repair and rebalance already
/// treat like any key): dangling records, blobs no record refers to, abandoned multipart uploads, and
/// rebuilding bucket/key records from the blob keys on the volumes.
/// </summary>
public static partial class Commands
{
    /// <summary>verify: every S3 record's blobs (and multipart manifest) must be committed.</summary>
    private static void VerifyS3(OpsContext ctx)
    {
        var r = ctx.Report;
        r.Declare("s3_dangling_records");
        foreach (var (recordKey, record) in ctx.Store.ScanRecords<S3ObjectRecord>(RecordTable.S3Objects, []))
        {
            var owned = record.OwnedBlobs().ToList();
            var missing = owned.Where(b => ctx.Store.Get(b.BlobKey) is not { State: ObjectState.Committed }).ToList();
            if (missing.Count > 0)
            {
                r.Add("s3_dangling_records");
                r.Detail($"s3-dangling: {KeyCodec.Encode(recordKey)}: {missing.Count} of {owned.Count} blobs not committed");
            }
        }
    }

    /// <summary>
    /// gc: abort multipart uploads older than --upload-ttl, then delete internal blobs that no object or part
    /// record refers to and that are older than --sweep-tmp-age (younger ones may be a PUT about to switch).
    /// </summary>
    private static async Task GcS3Async(OpsContext ctx, CancellationToken ct)
    {
        var r = ctx.Report;
        r.Declare("s3_uploads_expired", "s3_orphan_blobs");
        var uploadCutoff = Now() - (ctx.Options.UploadTtlSecs * 1000);
        foreach (var (uploadKey, upload) in ctx.Store.ScanRecords<MultipartRecord>(RecordTable.Uploads, []).ToList())
        {
            if (upload.InitiatedMs > uploadCutoff)
            {
                continue;
            }
            r.Add("s3_uploads_expired");
            if (ctx.Options.DryRun)
            {
                r.Detail($"would abort multipart upload {upload.UploadId} of {upload.Bucket}/{KeyCodec.Encode(upload.Key)}");
                continue;
            }
            var parts = ctx.Store.ScanRecords<PartRecord>(RecordTable.Parts, Encoding.UTF8.GetBytes(upload.UploadId + "/")).ToList();
            ctx.Store.WriteRecords(b =>
            {
                b.Delete(RecordTable.Uploads, uploadKey);
                foreach (var (partKey, _) in parts)
                {
                    b.Delete(RecordTable.Parts, partKey);
                }
            });
        }
        var referenced = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (_, record) in ctx.Store.ScanRecords<S3ObjectRecord>(RecordTable.S3Objects, []))
        {
            referenced.UnionWith(record.OwnedBlobs().Select(b => Convert.ToHexString(b.BlobKey)));
        }
        foreach (var (_, part) in ctx.Store.ScanRecords<PartRecord>(RecordTable.Parts, []))
        {
            referenced.Add(Convert.ToHexString(part.BlobKey));
        }
        var cutoff = Now() - (ctx.Options.SweepTmpAgeSecs * 1000);
        var orphans = ctx.Store.Scan()
            .Where(m => BlobKeys.IsInternal(m.Key) && m.Meta.State == ObjectState.Committed && m.Meta.UpdatedMs < cutoff && !referenced.Contains(Convert.ToHexString(m.Key)))
            .ToList();
        foreach (var (key, meta) in orphans)
        {
            r.Add("s3_orphan_blobs");
            if (ctx.Options.DryRun)
            {
                r.Detail($"would delete unreferenced blob {KeyCodec.Encode(key)}");
                continue;
            }
            // Tombstone first (as DELETE does), then the copies; a later gc expires the tombstone.
            var tomb = meta with { State = ObjectState.Tombstoned, Version = meta.Version + 1, UpdatedMs = Now() };
            if (!await ctx.Store.UpdateIfUnchangedAsync(key, meta, tomb))
            {
                continue;
            }
            foreach (var node in meta.Replicas)
            {
                await DeleteCopyAsync(ctx, key, node, tomb.Version, tombstone: true, "deleted_files", ct);
            }
        }
    }

    /// <summary>
    /// rebuild: for each bucket/key whose record is missing, the newest of its single-part blobs and multipart
    /// manifests becomes the object again. A single-part blob comes back with its ETag recomputed as the MD5 of
    /// the bytes (attributes are not on the volumes); a manifest brings back parts, ETag and attributes, but
    /// only when every part blob is committed. A bucket recreated here gets the owner of its newest manifest,
    /// or none.
    /// </summary>
    private static async Task RebuildS3Async(OpsContext ctx, CancellationToken ct)
    {
        var r = ctx.Report;
        r.Declare("s3_objects_restored", "s3_multipart_restored", "s3_manifests_incomplete", "s3_buckets_restored");
        var newest = new Dictionary<string, S3Candidate>(StringComparer.Ordinal);
        foreach (var (blobKey, meta) in ctx.Store.Scan())
        {
            if (meta.State != ObjectState.Committed)
            {
                continue;
            }
            var isManifest = BlobKeys.TryParseManifest(blobKey, out var bucket, out var key, out var version);
            if (!isManifest && !BlobKeys.TryParseObject(blobKey, out bucket, out key, out version))
            {
                continue;
            }
            var id = bucket + "/" + KeyCodec.Encode(key);
            if (!newest.TryGetValue(id, out var seen) || seen.Version < version)
            {
                newest[id] = new S3Candidate(bucket, key, version, blobKey, meta, isManifest);
            }
        }
        var restoredBuckets = new HashSet<string>(StringComparer.Ordinal);
        // Oldest first, so the newest manifest of a bucket recreated here decides its owner.
        foreach (var candidate in newest.Values.OrderBy(c => c.Version))
        {
            var (bucket, key, version, blobKey, meta, isManifest) = candidate;
            var recordKey = BlobKeys.ObjectRecordKey(bucket, key);
            if (ctx.Store.GetRecord<S3ObjectRecord>(RecordTable.S3Objects, recordKey) is not null)
            {
                continue;
            }
            if (isManifest)
            {
                await RestoreMultipartAsync(ctx, candidate, restoredBuckets, ct);
                continue;
            }
            if (ctx.Options.DryRun)
            {
                r.Add("s3_objects_restored");
                r.Detail($"would restore S3 object {bucket}/{KeyCodec.Encode(key)}");
                continue;
            }
            var md5 = await Md5Async(ctx, blobKey, meta, ct);
            if (md5 is null)
            {
                r.Add("errors");
                r.Detail($"could not read {KeyCodec.Encode(blobKey)} from any replica to restore {bucket}/{KeyCodec.Encode(key)}");
                continue;
            }
            EnsureBucket(ctx, bucket, "", restoredBuckets);
            ctx.Store.PutRecord(RecordTable.S3Objects, recordKey, new S3ObjectRecord
            {
                Blobs = [new BlobRef(blobKey, meta.Size, meta.Etag)],
                Size = meta.Size,
                Etag = md5,
                Version = version,
                LastModifiedMs = version / 1000,
            });
            r.Add("s3_objects_restored");
        }
    }

    /// <summary>
    /// Creates a missing bucket (owner: the given one, possibly none); a bucket created earlier in this run
    /// takes a later manifest's owner, a bucket that was already there is left alone.
    /// </summary>
    private static void EnsureBucket(OpsContext ctx, string bucket, string owner, HashSet<string> restoredBuckets)
    {
        var name = Encoding.UTF8.GetBytes(bucket);
        var existing = ctx.Store.GetRecord<BucketRecord>(RecordTable.Buckets, name);
        if (existing is null)
        {
            ctx.Store.PutRecord(RecordTable.Buckets, name, new BucketRecord(bucket, owner, Now()));
            restoredBuckets.Add(bucket);
            ctx.Report.Add("s3_buckets_restored");
        }
        else if (owner.Length > 0 && existing.Owner != owner && restoredBuckets.Contains(bucket))
        {
            ctx.Store.PutRecord(RecordTable.Buckets, name, existing with { Owner = owner });
        }
    }

    /// <summary>A bucket/key's newest object blob or manifest found in the index.</summary>
    private sealed record S3Candidate(string Bucket, byte[] Key, long Version, byte[] BlobKey, ObjectMeta Meta, bool IsManifest);

    /// <summary>MD5 of a blob read from the first replica that serves it whole (volumes verify BLAKE3 as they send).</summary>
    private static async Task<string?> Md5Async(OpsContext ctx, byte[] blobKey, ObjectMeta meta, CancellationToken ct)
    {
        using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
        var ok = await ReadBlobAsync(ctx, blobKey, meta, m => md5.AppendData(m.Span), () => md5.GetHashAndReset(), ct);
        return ok ? Convert.ToHexStringLower(md5.GetHashAndReset()) : null;
    }

    /// <summary>
    /// Streams a blob into append from the first replica that serves it whole, with the size and BLAKE3 the
    /// index records; reset runs before each replica is tried. False when no replica could.
    /// </summary>
    private static async Task<bool> ReadBlobAsync(OpsContext ctx, byte[] blobKey, ObjectMeta meta, Action<ReadOnlyMemory<byte>> append, Action reset, CancellationToken ct)
    {
        foreach (var node in meta.Replicas)
        {
            if (ctx.UrlOf(node) is not string url)
            {
                continue;
            }
            try
            {
                reset();
                using var resp = await ctx.Volumes.Http.GetAsync(NodeHttp.ObjectUri(url, blobKey), HttpCompletionOption.ResponseHeadersRead, ct);
                if (!resp.IsSuccessStatusCode)
                {
                    continue;
                }
                await using var body = await resp.Content.ReadAsStreamAsync(ct);
                var copy = await StreamCopier.CopyAsync(body, (m, _) =>
                {
                    append(m);
                    return ValueTask.CompletedTask;
                }, long.MaxValue, ct);
                if (copy.Ok && copy.Bytes == meta.Size && (meta.Etag.Length == 0 || copy.Etag == meta.Etag))
                {
                    return true;
                }
            }
            catch (HttpRequestException)
            {
            }
        }
        return false;
    }
}
