using System.Text.Json;
using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Ops;

/// <summary>rebuild of multipart S3 objects from the manifests their CompleteMultipartUpload left on the volumes.</summary>
public static partial class Commands
{
    /// <summary>Manifests are small (about 200 bytes a part, 10,000 parts at most); anything far larger is not one.</summary>
    private const long MaxManifestBytes = 16L * 1024 * 1024;

    /// <summary>
    /// Recreates the object record a manifest describes when every part blob it names is committed with the
    /// recorded size and BLAKE3; otherwise reports it (s3_manifests_incomplete) and restores nothing, since
    /// a multipart object missing a part cannot be served and an older version would resurrect overwritten data.
    /// </summary>
    private static async Task RestoreMultipartAsync(OpsContext ctx, S3Candidate candidate, HashSet<string> restoredBuckets, CancellationToken ct)
    {
        var r = ctx.Report;
        var name = $"{candidate.Bucket}/{KeyCodec.Encode(candidate.Key)}";
        var manifest = await ReadManifestAsync(ctx, candidate, ct);
        if (manifest is null)
        {
            r.Add("errors");
            r.Detail($"could not read manifest {KeyCodec.Encode(candidate.BlobKey)} from any replica to restore {name}");
            return;
        }
        if (manifest.Bucket != candidate.Bucket || !manifest.Key.AsSpan().SequenceEqual(candidate.Key) || manifest.Parts.Count == 0)
        {
            r.Add("errors");
            r.Detail($"manifest {KeyCodec.Encode(candidate.BlobKey)} does not describe {name}");
            return;
        }
        var missing = manifest.Parts
            .Where(p => ctx.Store.Get(p.BlobKey) is not { State: ObjectState.Committed } m || m.Size != p.Size || (m.Etag.Length > 0 && m.Etag != p.Blake3))
            .ToList();
        if (missing.Count > 0)
        {
            r.Add("s3_manifests_incomplete");
            r.Detail($"s3-incomplete: {name}: {missing.Count} of {manifest.Parts.Count} parts missing or different " +
                $"(parts {string.Join(", ", missing.Take(10).Select(p => p.PartNumber))}); not restored");
            return;
        }
        if (ctx.Options.DryRun)
        {
            r.Add("s3_multipart_restored");
            r.Detail($"would restore multipart S3 object {name} ({manifest.Parts.Count} parts)");
            return;
        }
        EnsureBucket(ctx, candidate.Bucket, manifest.Owner, restoredBuckets);
        ctx.Store.PutRecord(RecordTable.S3Objects, BlobKeys.ObjectRecordKey(candidate.Bucket, candidate.Key), new S3ObjectRecord
        {
            Blobs = manifest.Parts.Select(p => new BlobRef(p.BlobKey, p.Size, p.Blake3)).ToList(),
            Size = manifest.Parts.Sum(p => p.Size),
            Etag = manifest.Etag,
            Attributes = manifest.Attributes,
            Version = candidate.Version,
            LastModifiedMs = manifest.LastModifiedMs,
            Manifest = new BlobRef(candidate.BlobKey, candidate.Meta.Size, candidate.Meta.Etag),
        });
        r.Add("s3_multipart_restored");
    }

    /// <summary>The manifest's bytes from the first replica that serves them whole, decoded; null when none could.</summary>
    private static async Task<MultipartManifest?> ReadManifestAsync(OpsContext ctx, S3Candidate candidate, CancellationToken ct)
    {
        if (candidate.Meta.Size > MaxManifestBytes)
        {
            return null;
        }
        using var buffer = new MemoryStream((int)candidate.Meta.Size);
        var ok = await ReadBlobAsync(ctx, candidate.BlobKey, candidate.Meta, m => buffer.Write(m.Span), () => buffer.SetLength(0), ct);
        if (!ok)
        {
            return null;
        }
        try
        {
            return MultipartManifest.Decode(buffer.ToArray());
        }
        catch (Exception ex) when (ex is JsonException or InvalidDataException)
        {
            return null;
        }
    }
}
