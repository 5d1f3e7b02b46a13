using System.Text.Json.Serialization;

namespace NanoKv.Metadata;

/// <summary>An S3 bucket: its name, the access key that created (owns) it, and when.</summary>
public sealed record BucketRecord(string Name, string Owner, long CreatedMs);

/// <summary>HTTP attributes stored with an S3 object and returned on GET/HEAD.</summary>
public sealed record ObjectAttributes
{
    public string? ContentType { get; init; }

    public string? CacheControl { get; init; }

    public string? ContentDisposition { get; init; }

    public string? ContentEncoding { get; init; }

    public string? ContentLanguage { get; init; }

    public string? Expires { get; init; }

    /// <summary>x-amz-meta-* headers, names lower-cased without the prefix.</summary>
    public Dictionary<string, string> UserMeta { get; init; } = [];

    /// <summary>The verified x-amz-checksum-* the client sent with a single-part PutObject: header name and base64 value
    /// (returned on GET/HEAD with x-amz-checksum-mode: ENABLED).</summary>
    public string? ChecksumName { get; init; }

    public string? ChecksumValue { get; init; }
}

/// <summary>One blob an S3 object is made of (one for PutObject, one per part for multipart).</summary>
public sealed record BlobRef(byte[] BlobKey, long Size, string Etag);

/// <summary>
/// An S3 object: a pointer from bucket/key to the blob(s) holding its bytes. Overwrites write new blobs and
/// switch this record atomically; the replaced blobs are deleted after the switch.
/// </summary>
public sealed record S3ObjectRecord
{
    public List<BlobRef> Blobs { get; init; } = [];

    public long Size { get; init; }

    /// <summary>The S3 ETag without quotes: hex MD5, or md5-of-md5s "-N" for multipart.</summary>
    public string Etag { get; init; } = "";

    public ObjectAttributes Attributes { get; init; } = new();

    public long Version { get; init; }

    public long LastModifiedMs { get; init; }

    /// <summary>
    /// The blob holding a multipart object's <see cref="MultipartManifest"/> (null for single-part objects and
    /// multipart ones completed before manifests existed). Owned by the object: deleted with it.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public BlobRef? Manifest { get; init; }

    /// <summary>Every blob the object owns: its data blobs and its manifest.</summary>
    public IEnumerable<BlobRef> OwnedBlobs() => Manifest is null ? Blobs : Blobs.Append(Manifest);
}

/// <summary>A multipart upload in progress.</summary>
public sealed record MultipartRecord(string Bucket, byte[] Key, string UploadId, string Owner, long InitiatedMs, ObjectAttributes Attributes);

/// <summary>An uploaded part of a multipart upload (the latest upload of that part number).</summary>
/// <remarks>ChecksumName (x-amz-checksum-*) and Checksum (base64): the part's verified checksum, when the client sent one.</remarks>
public sealed record PartRecord(int PartNumber, byte[] BlobKey, long Size, string Md5Etag, string Blake3, long LastModifiedMs, string? ChecksumName = null, string? Checksum = null);
