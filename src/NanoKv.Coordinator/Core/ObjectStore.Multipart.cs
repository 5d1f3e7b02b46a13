using System.Security.Cryptography;
using NanoKv.Core;
using NanoKv.Metadata;
using NanoKv.S3.Checksums;

namespace NanoKv.Coordinator.Core;

/// <summary>One part of an S3 multipart upload.</summary>
public sealed record PartPut(string Bucket, string UploadId, int PartNumber, Stream Body, long? Length)
{
    /// <summary>The part's MD5 (hex), asked for once the body has been read.</summary>
    public required Func<string> Md5 { get; init; }

    public Func<CopyResult, ValueTask<StoreError?>>? BeforeCommit { get; init; }

    /// <summary>The part's verified x-amz-checksum-* as (header name, base64 value), asked for once the body has been read.</summary>
    public Func<(string Name, string Value)?>? Checksum { get; init; }
}

/// <summary>
/// S3 multipart uploads. Each part is a replicated blob written with the same 2PC as any object; completing
/// the upload first writes a manifest blob (what rebuild needs to bring the object back from the volumes),
/// then writes the object record (pointing at the parts' blobs in order, and at the manifest) and drops the
/// upload's records in one atomic metadata write, so the object is either wholly visible or not at all.
/// </summary>
public sealed partial class ObjectStore
{
    /// <summary>S3's minimum size of every part but the last.</summary>
    public const long MinPartSize = 5L * 1024 * 1024;

    public MultipartRecord? GetUpload(string bucket, string uploadId) =>
        store.GetRecord<MultipartRecord>(RecordTable.Uploads, BlobKeys.UploadRecordKey(bucket, uploadId));

    public StoreResult<MultipartRecord> CreateMultipartUpload(string bucket, byte[] key, string owner, ObjectAttributes attributes)
    {
        if (GetBucket(bucket) is null)
        {
            return new StoreError(StoreErrorKind.NoSuchBucket, $"bucket {bucket} does not exist");
        }
        var upload = new MultipartRecord(bucket, key, Guid.NewGuid().ToString("N"), owner, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), attributes);
        store.PutRecord(RecordTable.Uploads, BlobKeys.UploadRecordKey(bucket, upload.UploadId), upload);
        return upload;
    }

    /// <summary>Uploads (or re-uploads) one part; a replaced part's blob is deleted.</summary>
    public async Task<StoreResult<PartRecord>> UploadPartAsync(PartPut put, CancellationToken ct)
    {
        if (put.PartNumber is < 1 or > 10000)
        {
            return new StoreError(StoreErrorKind.InvalidPart, "part numbers are 1 to 10000");
        }
        if (GetUpload(put.Bucket, put.UploadId) is null)
        {
            return new StoreError(StoreErrorKind.NoSuchUpload, $"upload {put.UploadId} does not exist (completed or aborted?)");
        }
        var blobKey = BlobKeys.ForPart(put.UploadId, put.PartNumber, clock.Next());
        var blob = await PutAsync(new PutRequest(blobKey, put.Body, put.Length) { BeforeCommit = put.BeforeCommit, SyncedByNextWrite = true }, ct);
        if (!blob.Ok)
        {
            return blob.Error!;
        }
        var checksum = put.Checksum?.Invoke();
        var part = new PartRecord(put.PartNumber, blobKey, blob.Value!.Size, put.Md5(), blob.Value.Etag, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), checksum?.Name, checksum?.Value);
        var partKey = BlobKeys.PartRecordKey(put.UploadId, put.PartNumber);
        PartRecord? replaced;
        var gone = false;
        using (await store.LockAsync(BlobKeys.UploadRecordKey(put.Bucket, put.UploadId)))
        {
            // Completed or aborted while this part was uploading: the part is garbage.
            gone = GetUpload(put.Bucket, put.UploadId) is null;
            replaced = gone ? null : store.GetRecord<PartRecord>(RecordTable.Parts, partKey);
            if (!gone)
            {
                store.PutRecord(RecordTable.Parts, partKey, part);
            }
        }
        if (gone)
        {
            await DeleteAsync(blobKey, CancellationToken.None);
            return new StoreError(StoreErrorKind.NoSuchUpload, $"upload {put.UploadId} was completed or aborted during the part upload");
        }
        if (replaced is not null)
        {
            Retire([new BlobRef(replaced.BlobKey, replaced.Size, replaced.Blake3)]);
        }
        return part;
    }

    /// <summary>Parts of an upload in part-number order, after the given part number.</summary>
    public List<PartRecord> ListParts(string uploadId, int afterPart = 0, int limit = 10000) =>
        store.ScanRecords<PartRecord>(RecordTable.Parts, System.Text.Encoding.UTF8.GetBytes(uploadId + "/"))
            .Select(p => p.Value).Where(p => p.PartNumber > afterPart).Take(limit).ToList();

    /// <summary>Uploads in progress in a bucket, by key then initiation.</summary>
    public List<MultipartRecord> ListUploads(string bucket) =>
        store.ScanRecords<MultipartRecord>(RecordTable.Uploads, System.Text.Encoding.UTF8.GetBytes(bucket + "/"))
            .Select(u => u.Value)
            .OrderBy(u => u.Key, ByteOrder.Instance).ThenBy(u => u.InitiatedMs).ToList();

    /// <summary>
    /// Validates the client's part list (and the part checksums it gives, by part number) and makes the object
    /// visible in one atomic metadata write. An upload created with a checksum algorithm whose chosen parts all
    /// carry one gets the COMPOSITE checksum of them; otherwise the object has none.
    /// </summary>
    public async Task<StoreResult<S3ObjectRecord>> CompleteMultipartUploadAsync(string bucket, string uploadId, IReadOnlyList<(int Part, string Etag)> requested,
        IReadOnlyDictionary<int, (string Name, string Value)>? checksums = null)
    {
        var upload = GetUpload(bucket, uploadId);
        if (upload is null)
        {
            return new StoreError(StoreErrorKind.NoSuchUpload, $"upload {uploadId} does not exist (completed or aborted?)");
        }
        if (requested.Count == 0)
        {
            return new StoreError(StoreErrorKind.InvalidPart, "the part list is empty");
        }
        for (var i = 1; i < requested.Count; i++)
        {
            if (requested[i].Part <= requested[i - 1].Part)
            {
                return new StoreError(StoreErrorKind.InvalidPartOrder, "parts must be listed in ascending part-number order");
            }
        }
        var uploaded = ListParts(uploadId).ToDictionary(p => p.PartNumber);
        var chosen = new List<PartRecord>();
        foreach (var (number, etag) in requested)
        {
            if (!uploaded.TryGetValue(number, out var part) || !string.Equals(part.Md5Etag, etag.Trim('"'), StringComparison.OrdinalIgnoreCase))
            {
                return new StoreError(StoreErrorKind.InvalidPart, $"part {number} was not uploaded or its ETag is not {etag}");
            }
            // A part checksum the client lists must be the one its upload was verified with (same algorithm).
            if (checksums is not null && checksums.TryGetValue(number, out var given) && string.Equals(given.Name, part.ChecksumName, StringComparison.OrdinalIgnoreCase)
                && !string.Equals(given.Value.Trim(), part.Checksum, StringComparison.Ordinal))
            {
                return new StoreError(StoreErrorKind.InvalidPart, $"part {number} was uploaded with {part.ChecksumName} {part.Checksum}, not {given.Value}");
            }
            chosen.Add(part);
        }
        for (var i = 0; i < chosen.Count - 1; i++)
        {
            if (chosen[i].Size < MinPartSize)
            {
                return new StoreError(StoreErrorKind.EntityTooSmall, $"part {chosen[i].PartNumber} is {chosen[i].Size} bytes; every part but the last must be at least {MinPartSize}");
            }
        }
        var md5s = chosen.SelectMany(p => Convert.FromHexString(p.Md5Etag)).ToArray();
        var composite = CompositeChecksum(upload.Attributes.ChecksumName, chosen);
        var record = new S3ObjectRecord
        {
            Blobs = chosen.Select(p => new BlobRef(p.BlobKey, p.Size, p.Blake3)).ToList(),
            Size = chosen.Sum(p => p.Size),
            Etag = $"{Convert.ToHexStringLower(MD5.HashData(md5s))}-{chosen.Count}",
            // The upload's algorithm becomes the object's checksum only with a value (every part had one).
            Attributes = upload.Attributes with { ChecksumName = composite is null ? null : upload.Attributes.ChecksumName, ChecksumValue = composite },
            LastModifiedMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
        };
        var manifest = await PutManifestAsync(upload, chosen, record);
        if (!manifest.Ok)
        {
            return manifest.Error!;
        }
        record = record with { Manifest = manifest.Value };
        var recordKey = BlobKeys.ObjectRecordKey(bucket, upload.Key);
        var uploadKey = BlobKeys.UploadRecordKey(bucket, uploadId);
        // Under the upload's lock as well as the object's: a part or an abort of this upload waits for the switch.
        var (switched, previous) = await SwitchAsync(recordKey, record, _ =>
        {
            if (GetUpload(bucket, uploadId) is null)
            {
                return new StoreError(StoreErrorKind.NoSuchUpload, $"upload {uploadId} was completed or aborted meanwhile");
            }
            CrashPoints.Hit(CrashPoint.CoordinatorBeforeCompleteSwitch);
            return null;
        }, b =>
        {
            b.Delete(RecordTable.Uploads, uploadKey);
            foreach (var p in uploaded.Values)
            {
                b.Delete(RecordTable.Parts, BlobKeys.PartRecordKey(uploadId, p.PartNumber));
            }
        }, alsoLock: uploadKey);
        if (!switched.Ok)
        {
            Retire([manifest.Value!]);
            return switched.Error!;
        }
        CrashPoints.Hit(CrashPoint.CoordinatorAfterCompleteSwitch);
        var unused = uploaded.Values.Where(p => !chosen.Contains(p)).Select(p => new BlobRef(p.BlobKey, p.Size, p.Blake3));
        // A live rebuild may have restored this very object from its manifest meanwhile: keep what the new record uses.
        var kept = switched.Value!.OwnedBlobs().Select(b => Convert.ToHexString(b.BlobKey)).ToHashSet(StringComparer.Ordinal);
        var replaced = previous?.OwnedBlobs().Where(b => !kept.Contains(Convert.ToHexString(b.BlobKey))) ?? [];
        Retire(unused.Concat(replaced));
        return switched;
    }

    /// <summary>
    /// Writes the object's manifest as a blob with the same 2PC as any object, before the record switches,
    /// so a rebuild from the volumes finds every visible multipart object (a crash between the two leaves
    /// an unreferenced manifest, which gc collects).
    /// </summary>
    private async Task<StoreResult<BlobRef>> PutManifestAsync(MultipartRecord upload, List<PartRecord> parts, S3ObjectRecord record)
    {
        var version = clock.Next();
        var bytes = new MultipartManifest
        {
            Bucket = upload.Bucket,
            Key = upload.Key,
            Version = version,
            Etag = record.Etag,
            Size = record.Size,
            LastModifiedMs = record.LastModifiedMs,
            Owner = upload.Owner,
            Attributes = record.Attributes,
            Parts = parts.Select(p => new ManifestPart(p.PartNumber, p.BlobKey, p.Size, p.Blake3, p.Md5Etag)).ToList(),
        }.Encode();
        var blobKey = BlobKeys.ForManifest(upload.Bucket, upload.Key, version);
        // Not the client's token: a disconnect after the parts were accepted should not leave half a complete.
        var blob = await PutAsync(new PutRequest(blobKey, new MemoryStream(bytes, writable: false), bytes.Length), CancellationToken.None);
        return blob.Ok ? new BlobRef(blobKey, blob.Value!.Size, blob.Value.Etag) : blob.Error!;
    }

    /// <summary>Drops an upload and deletes its parts' blobs.</summary>
    public async Task<StoreError?> AbortMultipartUploadAsync(string bucket, string uploadId)
    {
        List<PartRecord> parts;
        using (await store.LockAsync(BlobKeys.UploadRecordKey(bucket, uploadId)))
        {
            if (GetUpload(bucket, uploadId) is null)
            {
                return new StoreError(StoreErrorKind.NoSuchUpload, $"upload {uploadId} does not exist");
            }
            parts = ListParts(uploadId);
            store.WriteRecords(b =>
            {
                b.Delete(RecordTable.Uploads, BlobKeys.UploadRecordKey(bucket, uploadId));
                foreach (var p in parts)
                {
                    b.Delete(RecordTable.Parts, BlobKeys.PartRecordKey(uploadId, p.PartNumber));
                }
            });
        }
        Retire(parts.Select(p => new BlobRef(p.BlobKey, p.Size, p.Blake3)));
        return null;
    }

    /// <summary>Unsigned lexicographic byte order (S3's key order).</summary>
    private sealed class ByteOrder : IComparer<byte[]>
    {
        public static readonly ByteOrder Instance = new();

        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }

    /// <summary>S3's checksum-of-checksums over the parts in order ("…-N"), or null when a part has none or there is no algorithm.</summary>
    private static string? CompositeChecksum(string? algorithmHeader, List<PartRecord> parts) =>
        ChecksumAlgorithms.TryParse(algorithmHeader, out var algorithm)
        && parts.All(p => p.Checksum is not null && string.Equals(p.ChecksumName, algorithmHeader, StringComparison.OrdinalIgnoreCase))
            ? ChecksumAlgorithms.Composite(algorithm, parts.Select(p => p.Checksum!).ToList())
            : null;
}
