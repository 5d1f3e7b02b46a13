using System.Globalization;
using Microsoft.Extensions.Logging;
using NanoKv.Coordinator.Core;
using NanoKv.Metadata;
using NanoKv.S3;
using NanoKv.S3.Checksums;
using NanoKv.S3.Payload;
using NanoKv.S3.SigV4;
using NanoKv.S3.Xml;

namespace NanoKv.Coordinator.Api.S3;

/// <summary>PutObject, GetObject/HeadObject (ranges, conditionals, partNumber, response-* overrides), DeleteObject(s), CopyObject.</summary>
public sealed class S3Objects(ObjectStore store, ILogger logger)
{
    public async Task PutObjectAsync(S3Context s3)
    {
        var attributes = S3Attributes.FromRequest(s3);
        var (condition, ifMatch) = WriteConditionOf(s3);
        await using var body = S3Body.Open(s3, deferMd5: true);
        var put = await store.PutObjectAsync(new ObjectPut(s3.Bucket, s3.KeyBytes, body.Stream, body.Length)
        {
            BeforeCommit = body.BeforeCommitAsync,
            Attributes = attributes,
            Condition = condition,
            IfMatchEtag = ifMatch,
            Etag = () => body.Md5Hex,
            Checksum = () => body.Checksum is { } c ? (ChecksumAlgorithms.HeaderName(c.Algorithm), c.Value) : null,
        }, s3.Aborted);
        if (!put.Ok)
        {
            throw S3StoreErrors.ToS3(put.Error!, body.Chunked, body.Verifying);
        }
        s3.Response.Headers.ETag = ETags.Quote(put.Value!.Etag);
        body.EchoChecksum(s3);
    }

    /// <summary>If-None-Match: * is write-once, If-Match: etag is compare-and-swap; both re-checked by the store at the switch.</summary>
    private static (WriteCondition, string?) WriteConditionOf(S3Context s3)
    {
        if (s3.Header("If-None-Match") is { } inm)
        {
            return inm.Trim() == "*"
                ? (WriteCondition.IfNoneMatch, null)
                : throw new S3Exception(S3ErrorCode.NotImplemented, "If-None-Match on PUT supports only '*'.");
        }
        if (s3.Header("If-Match") is { } im)
        {
            return (WriteCondition.IfMatch, ETags.Unquote(im));
        }
        return (WriteCondition.Overwrite, null);
    }

    public async Task GetObjectAsync(S3Context s3, bool headOnly)
    {
        using var handle = await store.OpenObjectAsync(s3.Bucket, s3.KeyBytes)
            ?? throw new S3Exception(S3ErrorCode.NoSuchKey, "The specified key does not exist.") { Details = [new("Key", s3.Key)] };
        var record = handle.Record;
        var lastModified = DateTimeOffset.FromUnixTimeMilliseconds(record.LastModifiedMs);
        if (CheckConditions(s3, record.Etag, lastModified, "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since") is { } status)
        {
            if (status == 304)
            {
                s3.Response.StatusCode = 304;
                s3.Response.Headers.ETag = ETags.Quote(record.Etag);
                s3.Response.Headers.LastModified = S3Xml.HttpDate(lastModified);
                return;
            }
            throw new S3Exception(S3ErrorCode.PreconditionFailed, "At least one of the pre-conditions you specified did not hold.") { Details = [new("Condition", "If-Match")] };
        }
        var (start, end, partial) = RangeOf(s3, record);
        var h = s3.Response.Headers;
        S3Attributes.Write(s3, record.Attributes, withOverrides: true);
        h.ETag = ETags.Quote(record.Etag);
        h.LastModified = S3Xml.HttpDate(lastModified);
        h.AcceptRanges = "bytes";
        // The stored checksum covers the whole object: S3 returns it only when asked, and not for a range.
        if (record.Attributes is { ChecksumName: { } checksumName, ChecksumValue: { } checksumValue } && !partial
            && string.Equals(s3.Header("x-amz-checksum-mode"), "ENABLED", StringComparison.OrdinalIgnoreCase))
        {
            h[checksumName] = checksumValue;
            h["x-amz-checksum-type"] = checksumValue.Contains('-', StringComparison.Ordinal) ? "COMPOSITE" : "FULL_OBJECT"; // base64 has no '-'; a composite ends "-N"
        }
        if (record.Etag.Contains('-', StringComparison.Ordinal) && s3.Has("partNumber"))
        {
            h["x-amz-mp-parts-count"] = record.Blobs.Count.ToString(CultureInfo.InvariantCulture);
        }
        s3.Response.ContentLength = record.Size == 0 ? 0 : end - start + 1;
        if (partial)
        {
            s3.Response.StatusCode = 206;
            h.ContentRange = $"bytes {start}-{end}/{record.Size}";
        }
        if (headOnly || record.Size == 0)
        {
            return;
        }
        var sink = new S3ResponseSink(s3);
        var failed = await store.ReadObjectAsync(handle, start, end, sink, s3.Aborted);
        if (failed is not null)
        {
            logger.LogWarning("S3 GET {Resource} failed: {Detail}", s3.Resource, failed.Detail);
            if (!s3.Response.HasStarted)
            {
                throw S3StoreErrors.ToS3(failed);
            }
            s3.Http.Abort();
        }
    }

    /// <summary>RFC 7232 order as S3 applies it: If-Match, else If-Unmodified-Since (412); If-None-Match, else If-Modified-Since (304).</summary>
    internal static int? CheckConditions(S3Context s3, string etag, DateTimeOffset lastModified, string ifMatch, string ifNoneMatch, string ifModifiedSince, string ifUnmodifiedSince)
    {
        var modified = lastModified.ToUnixTimeSeconds();
        if (s3.Header(ifMatch) is { } im)
        {
            if (!ETags.Matches(im, etag))
            {
                return 412;
            }
        }
        else if (HttpDate(s3.Header(ifUnmodifiedSince)) is { } ius && modified > ius.ToUnixTimeSeconds())
        {
            return 412;
        }
        if (s3.Header(ifNoneMatch) is { } inm)
        {
            if (ETags.Matches(inm, etag))
            {
                return 304;
            }
        }
        else if (HttpDate(s3.Header(ifModifiedSince)) is { } ims && modified <= ims.ToUnixTimeSeconds())
        {
            return 304;
        }
        return null;
    }

    private static DateTimeOffset? HttpDate(string? v) =>
        v is not null && DateTimeOffset.TryParse(v, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t) ? t : null;

    /// <summary>The bytes to send: partNumber (one part of a multipart object), else Range (suffix, open, clamped), else all.</summary>
    private static (long Start, long End, bool Partial) RangeOf(S3Context s3, S3ObjectRecord record)
    {
        var size = record.Size;
        if (s3.IntQ("partNumber", 1, 10000) is { } part)
        {
            var multipart = record.Etag.Contains('-', StringComparison.Ordinal);
            if (!multipart)
            {
                return part == 1 ? (0, size - 1, false) : throw InvalidPartNumber(size);
            }
            if (part > record.Blobs.Count)
            {
                throw InvalidPartNumber(size);
            }
            var offset = record.Blobs.Take(part - 1).Sum(b => b.Size);
            return (offset, offset + record.Blobs[part - 1].Size - 1, true);
        }
        if (s3.Header("Range") is not { } range || ParseRange(range, size) is not { } r)
        {
            return (0, size - 1, false);
        }
        return r;
    }

    private static S3Exception InvalidPartNumber(long size) =>
        new(S3ErrorCode.InvalidRange, "The requested partnumber is not satisfiable") { Details = [new("ActualObjectSize", size.ToString(CultureInfo.InvariantCulture))] };

    /// <summary>"bytes=a-b", "bytes=a-", "bytes=-n"; malformed or multi-range headers are ignored (whole object), as S3 does.</summary>
    internal static (long, long, bool)? ParseRange(string header, long size)
    {
        var v = header.Trim();
        if (!v.StartsWith("bytes=", StringComparison.OrdinalIgnoreCase) || v.Contains(',', StringComparison.Ordinal))
        {
            return null;
        }
        var spec = v[6..].Trim();
        var dash = spec.IndexOf('-', StringComparison.Ordinal);
        if (dash < 0)
        {
            return null;
        }
        var (a, b) = (spec[..dash].Trim(), spec[(dash + 1)..].Trim());
        long start, end;
        if (a.Length == 0)
        {
            if (!long.TryParse(b, NumberStyles.None, CultureInfo.InvariantCulture, out var suffix))
            {
                return null;
            }
            if (suffix == 0)
            {
                throw Unsatisfiable(size);
            }
            start = Math.Max(0, size - suffix);
            end = size - 1;
        }
        else
        {
            if (!long.TryParse(a, NumberStyles.None, CultureInfo.InvariantCulture, out start))
            {
                return null;
            }
            end = size - 1;
            if (b.Length > 0)
            {
                if (!long.TryParse(b, NumberStyles.None, CultureInfo.InvariantCulture, out var e) || e < start)
                {
                    return null;
                }
                end = Math.Min(e, size - 1);
            }
        }
        if (start >= size)
        {
            throw Unsatisfiable(size);
        }
        return (start, end, true);
    }

    private static S3Exception Unsatisfiable(long size) =>
        new(S3ErrorCode.InvalidRange, "The requested range is not satisfiable") { Details = [new("ActualObjectSize", size.ToString(CultureInfo.InvariantCulture))] };

    public async Task DeleteObjectAsync(S3Context s3)
    {
        await store.DeleteObjectAsync(s3.Bucket, s3.KeyBytes);
        s3.Response.StatusCode = 204;
    }

    public async Task DeleteObjectsAsync(S3Context s3)
    {
        DeleteObjectsRequest request;
        await using (var body = S3Body.Open(s3))
        {
            request = S3Requests.ParseDelete(await S3Requests.LoadAsync(body.Stream, s3.Aborted));
        }
        var deleted = new List<string>();
        var errors = new List<(string, S3ErrorCode, string)>();
        foreach (var key in request.Keys)
        {
            var bytes = System.Text.Encoding.UTF8.GetBytes(key);
            if (bytes.Length is 0 or > NanoKv.Core.KeyCodec.MaxKeyBytes)
            {
                errors.Add((key, S3ErrorCode.KeyTooLongError, "The key is empty or longer than 1024 bytes."));
                continue;
            }
            await store.DeleteObjectAsync(s3.Bucket, bytes);
            if (!request.Quiet)
            {
                deleted.Add(key);
            }
        }
        await s3.WriteXmlAsync(S3Responses.DeleteResult(deleted, errors));
    }

    /// <summary>CopyObject: the source streamed from a replica through the store into a fresh object (same 2PC as a PUT).</summary>
    public async Task CopyObjectAsync(S3Context s3, string copySource, Func<S3Context, string, BucketRecord> ownedSource)
    {
        var (srcBucket, srcKey) = ParseCopySource(copySource);
        ownedSource(s3, srcBucket);
        using var handle = await store.OpenObjectAsync(srcBucket, srcKey)
            ?? throw new S3Exception(S3ErrorCode.NoSuchKey, "The specified key does not exist.") { Details = [new("Key", System.Text.Encoding.UTF8.GetString(srcKey))] };
        var src = handle.Record;
        CheckCopySourceConditions(s3, src);
        var replace = s3.Header("x-amz-metadata-directive") switch
        {
            null or "COPY" => false,
            "REPLACE" => true,
            var other => throw new S3Exception(S3ErrorCode.InvalidArgument, $"Unknown metadata directive '{other}'."),
        };
        if (!replace && srcBucket == s3.Bucket && srcKey.AsSpan().SequenceEqual(s3.KeyBytes))
        {
            throw new S3Exception(S3ErrorCode.InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.");
        }
        var attributes = replace ? S3Attributes.FromRequest(s3) : src.Attributes;
        var (condition, ifMatch) = WriteConditionOf(s3);
        await using var stream = new VerifyingStream(store.OpenObjectStream(handle, 0, src.Size - 1, s3.Aborted), PayloadChecks.None with { ExpectedLength = src.Size });
        var put = await store.PutObjectAsync(new ObjectPut(s3.Bucket, s3.KeyBytes, stream, src.Size)
        {
            Attributes = attributes,
            Condition = condition,
            IfMatchEtag = ifMatch,
            Etag = () => stream.Md5Hex!,
        }, s3.Aborted);
        if (!put.Ok)
        {
            throw S3StoreErrors.ToS3(put.Error!, stream);
        }
        await s3.WriteXmlAsync(S3Responses.CopyObjectResult(DateTimeOffset.FromUnixTimeMilliseconds(put.Value!.LastModifiedMs), put.Value.Etag));
    }

    /// <summary>x-amz-copy-source-if-*: 412 PreconditionFailed when one does not hold (304 cases are 412 too for copies).</summary>
    internal static void CheckCopySourceConditions(S3Context s3, S3ObjectRecord src)
    {
        if (CheckConditions(s3, src.Etag, DateTimeOffset.FromUnixTimeMilliseconds(src.LastModifiedMs),
            "x-amz-copy-source-if-match", "x-amz-copy-source-if-none-match", "x-amz-copy-source-if-modified-since", "x-amz-copy-source-if-unmodified-since") is not null)
        {
            throw new S3Exception(S3ErrorCode.PreconditionFailed, "At least one of the pre-conditions you specified did not hold.");
        }
    }

    /// <summary>"/bucket/key" or "bucket/key", URL-encoded, optionally "?versionId=..." (only "null" or absent: no versioning).</summary>
    internal static (string Bucket, byte[] Key) ParseCopySource(string header)
    {
        var v = header.Trim();
        var q = v.IndexOf('?', StringComparison.Ordinal);
        if (q >= 0)
        {
            var query = AwsUri.ParseQuery(v[(q + 1)..]);
            if (query.Any(p => p.Key == "versionId" && p.Value != "null"))
            {
                throw new S3Exception(S3ErrorCode.NotImplemented, "Versioned copy sources are not supported (nanokv has no versioning).");
            }
            v = v[..q];
        }
        var decoded = AwsUri.Decode(v, plusIsSpace: false).TrimStart('/');
        var slash = decoded.IndexOf('/', StringComparison.Ordinal);
        if (slash <= 0 || slash == decoded.Length - 1)
        {
            throw new S3Exception(S3ErrorCode.InvalidArgument, "Copy Source must mention the source bucket and key: sourcebucket/sourcekey.");
        }
        return (decoded[..slash], System.Text.Encoding.UTF8.GetBytes(decoded[(slash + 1)..]));
    }
}
