namespace NanoKv.Metadata;

/// <summary>
/// What a completed multipart upload leaves on the volumes (as a replicated blob, see BlobKeys.ForManifest)
/// so that rebuild can recreate the object record after the index is lost: the parts' blobs in order, the
/// S3 ETag, the stored attributes and the bucket's owner. Written before the record switches visible.
/// </summary>
public sealed record MultipartManifest
{
    public string Bucket { get; init; } = "";

    public byte[] Key { get; init; } = [];

    /// <summary>The version in the manifest's blob key: the newest of manifest and single-part blob wins in rebuild.</summary>
    public long Version { get; init; }

    /// <summary>The S3 ETag without quotes (md5-of-md5s "-N").</summary>
    public string Etag { get; init; } = "";

    public long Size { get; init; }

    public long LastModifiedMs { get; init; }

    /// <summary>The access key that completed the upload (the bucket's owner then): a rebuilt bucket's owner.</summary>
    public string Owner { get; init; } = "";

    public ObjectAttributes Attributes { get; init; } = new();

    public List<ManifestPart> Parts { get; init; } = [];

    /// <summary>The format byte + JSON of <see cref="MetaCodec"/>.</summary>
    public byte[] Encode() => MetaCodec.Encode(this);

    public static MultipartManifest Decode(byte[] bytes) => MetaCodec.Decode<MultipartManifest>(bytes);
}

/// <summary>One part of a manifest: its blob key, size, BLAKE3 (the blob's etag) and S3 MD5.</summary>
public sealed record ManifestPart(int PartNumber, byte[] BlobKey, long Size, string Blake3, string Md5Etag);
