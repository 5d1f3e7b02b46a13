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
    /// <summary>verify: every S3 record's blobs must be committed.</summary>
    private static void VerifyS3(OpsContext ctx)
    {
        var r = ctx.Report;
        r.Declare("s3_dangling_records");
        foreach (var (recordKey, record) in ctx.Store.ScanRecords<S3ObjectRecord>(RecordTable.S3Objects, []))
        {
            var missing = record.Blobs.Where(b => ctx.Store.Get(b.BlobKey) is not { State: ObjectState.Committed }).ToList();
            if (missing.Count > 0)
            {
                r.Add("s3_dangling_records");
                r.Detail($"s3-dangling: {KeyCodec.Encode(recordKey)}: {missing.Count} of {record.Blobs.Count} blobs not committed");
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
            referenced.UnionWith(record.Blobs.Select(b => Convert.ToHexString(b.BlobKey)));
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
    /// rebuild: for each bucket/key whose record is missing, the newest committed object blob becomes the
    /// object again (its bucket recreated without an owner; the ETag recomputed as the MD5 of the bytes).
    /// </summary>
    private static async Task RebuildS3Async(OpsContext ctx, CancellationToken ct)
    {
        var r = ctx.Report;
        r.Declare("s3_objects_restored", "s3_buckets_restored");
        var newest = new Dictionary<string, (string Bucket, byte[] Key, long Version, byte[] BlobKey, ObjectMeta Meta)>(StringComparer.Ordinal);
        foreach (var (blobKey, meta) in ctx.Store.Scan())
        {
            if (meta.State != ObjectState.Committed || !BlobKeys.TryParseObject(blobKey, out var bucket, out var key, out var version))
            {
                continue;
            }
            var id = bucket + "/" + KeyCodec.Encode(key);
            if (!newest.TryGetValue(id, out var seen) || seen.Version < version)
            {
                newest[id] = (bucket, key, version, blobKey, meta);
            }
        }
        foreach (var (bucket, key, version, blobKey, meta) in newest.Values)
        {
            var recordKey = BlobKeys.ObjectRecordKey(bucket, key);
            if (ctx.Store.GetRecord<S3ObjectRecord>(RecordTable.S3Objects, recordKey) is not null)
            {
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
            if (ctx.Store.GetRecord<BucketRecord>(RecordTable.Buckets, Encoding.UTF8.GetBytes(bucket)) is null)
            {
                ctx.Store.PutRecord(RecordTable.Buckets, Encoding.UTF8.GetBytes(bucket), new BucketRecord(bucket, "", Now()));
                r.Add("s3_buckets_restored");
            }
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

    /// <summary>MD5 of a blob read from the first replica that serves it whole (volumes verify BLAKE3 as they send).</summary>
    private static async Task<string?> Md5Async(OpsContext ctx, byte[] blobKey, ObjectMeta meta, CancellationToken ct)
    {
        foreach (var node in meta.Replicas)
        {
            if (ctx.UrlOf(node) is not string url)
            {
                continue;
            }
            try
            {
                using var resp = await ctx.Volumes.Http.GetAsync(NodeHttp.ObjectUri(url, blobKey), HttpCompletionOption.ResponseHeadersRead, ct);
                if (!resp.IsSuccessStatusCode)
                {
                    continue;
                }
                await using var body = await resp.Content.ReadAsStreamAsync(ct);
                using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
                var copy = await StreamCopier.CopyAsync(body, (m, _) =>
                {
                    md5.AppendData(m.Span);
                    return ValueTask.CompletedTask;
                }, long.MaxValue, ct);
                if (copy.Ok && copy.Bytes == meta.Size && (meta.Etag.Length == 0 || copy.Etag == meta.Etag))
                {
                    return Convert.ToHexStringLower(md5.GetHashAndReset());
                }
            }
            catch (HttpRequestException)
            {
            }
        }
        return null;
    }
}
