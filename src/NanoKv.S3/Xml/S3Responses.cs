using System.Xml;
using NanoKv.S3.SigV4;

namespace NanoKv.S3.Xml;

public sealed record BucketEntry(string Name, DateTimeOffset CreationDate);

public sealed record ObjectEntry(string Key, DateTimeOffset LastModified, string ETag, long Size, string? Owner = null);

/// <summary>A ListParts entry; Checksum is the part's stored checksum as (XML element, base64 value).</summary>
public sealed record PartEntry(int PartNumber, DateTimeOffset LastModified, string ETag, long Size, (string Element, string Value)? Checksum = null);

public sealed record UploadEntry(string Key, string UploadId, string Owner, DateTimeOffset Initiated);

/// <summary>One ListObjects page, V1 or V2 (the fields each version does not use are ignored by its writer).</summary>
public sealed record ListObjectsPage
{
    public required string Bucket { get; init; }
    public string Prefix { get; init; } = "";
    public string? Delimiter { get; init; }
    public int MaxKeys { get; init; } = 1000;
    public bool UrlEncode { get; init; }
    public bool IsTruncated { get; init; }
    public bool FetchOwner { get; init; }
    public IReadOnlyList<ObjectEntry> Contents { get; init; } = [];
    public IReadOnlyList<string> CommonPrefixes { get; init; } = [];

    // V2
    public string? ContinuationToken { get; init; }
    public string? NextContinuationToken { get; init; }
    public string? StartAfter { get; init; }

    // V1
    public string Marker { get; init; } = "";
    public string? NextMarker { get; init; }
}

/// <summary>Writers for the S3 XML response documents nanokv serves.</summary>
public static class S3Responses
{
    public static byte[] ListBuckets(string owner, IEnumerable<BucketEntry> buckets) =>
        S3Xml.Document("ListAllMyBucketsResult", w =>
        {
            w.Owner("Owner", owner);
            w.WriteStartElement("Buckets");
            foreach (var b in buckets)
            {
                w.WriteStartElement("Bucket");
                w.WriteElementString("Name", b.Name);
                w.Element("CreationDate", b.CreationDate);
                w.WriteEndElement();
            }
            w.WriteEndElement();
        });

    public static byte[] ListObjectsV2(ListObjectsPage p) =>
        S3Xml.Document("ListBucketResult", w =>
        {
            w.WriteElementString("Name", p.Bucket);
            w.WriteElementString("Prefix", Enc(p, p.Prefix));
            w.Element("StartAfter", p.StartAfter is null ? null : Enc(p, p.StartAfter));
            w.Element("ContinuationToken", p.ContinuationToken);
            w.Element("NextContinuationToken", p.NextContinuationToken);
            w.Element("KeyCount", p.Contents.Count + p.CommonPrefixes.Count);
            w.Element("MaxKeys", p.MaxKeys);
            w.Element("Delimiter", p.Delimiter is null ? null : Enc(p, p.Delimiter));
            w.Element("EncodingType", p.UrlEncode ? "url" : null);
            w.Element("IsTruncated", p.IsTruncated);
            Entries(w, p, withOwner: p.FetchOwner);
        });

    public static byte[] ListObjectsV1(ListObjectsPage p) =>
        S3Xml.Document("ListBucketResult", w =>
        {
            w.WriteElementString("Name", p.Bucket);
            w.WriteElementString("Prefix", Enc(p, p.Prefix));
            w.WriteElementString("Marker", Enc(p, p.Marker));
            w.Element("NextMarker", p.NextMarker is null ? null : Enc(p, p.NextMarker));
            w.Element("MaxKeys", p.MaxKeys);
            w.Element("Delimiter", p.Delimiter is null ? null : Enc(p, p.Delimiter));
            w.Element("EncodingType", p.UrlEncode ? "url" : null);
            w.Element("IsTruncated", p.IsTruncated);
            Entries(w, p, withOwner: true);
        });

    private static void Entries(XmlWriter w, ListObjectsPage p, bool withOwner)
    {
        foreach (var o in p.Contents)
        {
            w.WriteStartElement("Contents");
            w.WriteElementString("Key", Enc(p, o.Key));
            w.Element("LastModified", o.LastModified);
            w.WriteElementString("ETag", ETags.Quote(o.ETag));
            w.Element("Size", o.Size);
            if (withOwner && o.Owner is not null)
            {
                w.Owner("Owner", o.Owner);
            }
            w.WriteElementString("StorageClass", "STANDARD");
            w.WriteEndElement();
        }
        foreach (var cp in p.CommonPrefixes)
        {
            w.WriteStartElement("CommonPrefixes");
            w.WriteElementString("Prefix", Enc(p, cp));
            w.WriteEndElement();
        }
    }

    /// <summary>encoding-type=url: keys and prefixes percent-encoded (clients decode them, so keys with control characters survive XML).</summary>
    private static string Enc(ListObjectsPage p, string s) => p.UrlEncode ? AwsUri.Encode(s, keepSlash: true) : s;

    public static byte[] InitiateMultipartUpload(string bucket, string key, string uploadId) =>
        S3Xml.Document("InitiateMultipartUploadResult", w =>
        {
            w.WriteElementString("Bucket", bucket);
            w.WriteElementString("Key", key);
            w.WriteElementString("UploadId", uploadId);
        });

    /// <param name="checksum">the object's COMPOSITE checksum as (XML element, value), if the upload has one</param>
    public static byte[] CompleteMultipartUpload(string location, string bucket, string key, string etag, (string Element, string Value)? checksum = null) =>
        S3Xml.Document("CompleteMultipartUploadResult", w =>
        {
            w.WriteElementString("Location", location);
            w.WriteElementString("Bucket", bucket);
            w.WriteElementString("Key", key);
            w.WriteElementString("ETag", ETags.Quote(etag));
            if (checksum is { } c)
            {
                w.WriteElementString(c.Element, c.Value);
                w.WriteElementString("ChecksumType", "COMPOSITE");
            }
        });

    public static byte[] ListParts(string bucket, string key, string uploadId, string owner, int partNumberMarker,
        int? nextPartNumberMarker, int maxParts, bool isTruncated, IEnumerable<PartEntry> parts) =>
        S3Xml.Document("ListPartsResult", w =>
        {
            w.WriteElementString("Bucket", bucket);
            w.WriteElementString("Key", key);
            w.WriteElementString("UploadId", uploadId);
            w.Owner("Initiator", owner);
            w.Owner("Owner", owner);
            w.WriteElementString("StorageClass", "STANDARD");
            w.Element("PartNumberMarker", partNumberMarker);
            if (nextPartNumberMarker is { } next)
            {
                w.Element("NextPartNumberMarker", next);
            }
            w.Element("MaxParts", maxParts);
            w.Element("IsTruncated", isTruncated);
            foreach (var part in parts)
            {
                w.WriteStartElement("Part");
                w.Element("PartNumber", part.PartNumber);
                w.Element("LastModified", part.LastModified);
                w.WriteElementString("ETag", ETags.Quote(part.ETag));
                w.Element("Size", part.Size);
                if (part.Checksum is { } checksum)
                {
                    w.WriteElementString(checksum.Element, checksum.Value);
                }
                w.WriteEndElement();
            }
        });

    public static byte[] ListMultipartUploads(string bucket, string prefix, string? delimiter, string keyMarker, string uploadIdMarker,
        string? nextKeyMarker, string? nextUploadIdMarker, int maxUploads, bool isTruncated,
        IEnumerable<UploadEntry> uploads, IEnumerable<string> commonPrefixes) =>
        S3Xml.Document("ListMultipartUploadsResult", w =>
        {
            w.WriteElementString("Bucket", bucket);
            w.WriteElementString("KeyMarker", keyMarker);
            w.WriteElementString("UploadIdMarker", uploadIdMarker);
            w.Element("NextKeyMarker", nextKeyMarker);
            w.Element("NextUploadIdMarker", nextUploadIdMarker);
            w.WriteElementString("Prefix", prefix);
            w.Element("Delimiter", delimiter);
            w.Element("MaxUploads", maxUploads);
            w.Element("IsTruncated", isTruncated);
            foreach (var u in uploads)
            {
                w.WriteStartElement("Upload");
                w.WriteElementString("Key", u.Key);
                w.WriteElementString("UploadId", u.UploadId);
                w.Owner("Initiator", u.Owner);
                w.Owner("Owner", u.Owner);
                w.WriteElementString("StorageClass", "STANDARD");
                w.Element("Initiated", u.Initiated);
                w.WriteEndElement();
            }
            foreach (var cp in commonPrefixes)
            {
                w.WriteStartElement("CommonPrefixes");
                w.WriteElementString("Prefix", cp);
                w.WriteEndElement();
            }
        });

    /// <summary>DeleteObjects answer: Deleted entries (omitted in quiet mode) and Error entries.</summary>
    public static byte[] DeleteResult(IEnumerable<string> deleted, IEnumerable<(string Key, S3ErrorCode Code, string Message)> errors) =>
        S3Xml.Document("DeleteResult", w =>
        {
            foreach (var k in deleted)
            {
                w.WriteStartElement("Deleted");
                w.WriteElementString("Key", k);
                w.WriteEndElement();
            }
            foreach (var (k, code, message) in errors)
            {
                w.WriteStartElement("Error");
                w.WriteElementString("Key", k);
                w.WriteElementString("Code", code.ToString());
                w.WriteElementString("Message", message);
                w.WriteEndElement();
            }
        });

    public static byte[] CopyObjectResult(DateTimeOffset lastModified, string etag) => CopyResult("CopyObjectResult", lastModified, etag);

    public static byte[] CopyPartResult(DateTimeOffset lastModified, string etag) => CopyResult("CopyPartResult", lastModified, etag);

    private static byte[] CopyResult(string root, DateTimeOffset lastModified, string etag) =>
        S3Xml.Document(root, w =>
        {
            w.Element("LastModified", lastModified);
            w.WriteElementString("ETag", ETags.Quote(etag));
        });

    /// <summary>GetBucketAcl/GetObjectAcl: nanokv has no ACLs, so the answer is always "the owner has FULL_CONTROL".</summary>
    public static byte[] OwnerOnlyAcl(string owner) =>
        S3Xml.Document("AccessControlPolicy", w =>
        {
            w.Owner("Owner", owner);
            w.WriteStartElement("AccessControlList");
            w.WriteStartElement("Grant");
            w.WriteStartElement("Grantee");
            w.WriteAttributeString("xmlns", "xsi", null, "http://www.w3.org/2001/XMLSchema-instance");
            w.WriteAttributeString("xsi", "type", "http://www.w3.org/2001/XMLSchema-instance", "CanonicalUser");
            w.WriteElementString("ID", owner);
            w.WriteElementString("DisplayName", owner);
            w.WriteEndElement();
            w.WriteElementString("Permission", "FULL_CONTROL");
            w.WriteEndElement();
            w.WriteEndElement();
        });

    /// <summary>GetBucketLocation: empty element for us-east-1, as AWS answers.</summary>
    public static byte[] LocationConstraint(string region) =>
        S3Xml.Document("LocationConstraint", w =>
        {
            if (region != "us-east-1")
            {
                w.WriteString(region);
            }
        });
}
