using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using NanoKv.Coordinator.Core;
using NanoKv.Metadata;
using NanoKv.S3;
using NanoKv.S3.Checksums;
using NanoKv.S3.Payload;
using NanoKv.S3.Xml;

namespace NanoKv.Coordinator.Api.S3;

/// <summary>CreateMultipartUpload, UploadPart, UploadPartCopy, CompleteMultipartUpload, AbortMultipartUpload, ListParts.
/// Parts are replicated blobs written by the store with the same 2PC as objects; completion is one metadata write.</summary>
public sealed class S3Multipart(ObjectStore store, ILogger logger)
{
    public async Task CreateAsync(S3Context s3)
    {
        // The upload's algorithm rides in its attributes; Complete fills in the object's value.
        var algorithm = RequestedChecksum(s3);
        var attributes = S3Attributes.FromRequest(s3) with { ChecksumName = algorithm is { } a ? ChecksumAlgorithms.HeaderName(a) : null };
        var created = store.CreateMultipartUpload(s3.Bucket, s3.KeyBytes, s3.User, attributes);
        if (!created.Ok)
        {
            throw S3StoreErrors.ToS3(created.Error!);
        }
        if (algorithm is { } chosen)
        {
            s3.Response.Headers["x-amz-checksum-algorithm"] = ChecksumAlgorithms.UpperName(chosen);
            s3.Response.Headers["x-amz-checksum-type"] = "COMPOSITE";
        }
        await s3.WriteXmlAsync(S3Responses.InitiateMultipartUpload(s3.Bucket, s3.Key, created.Value!.UploadId));
    }

    /// <summary>The upload named by ?uploadId, which must be for this bucket and key.</summary>
    private MultipartRecord Upload(S3Context s3)
    {
        var id = s3.Q("uploadId") ?? "";
        var upload = store.GetUpload(s3.Bucket, id);
        return upload is not null && upload.Key.AsSpan().SequenceEqual(s3.KeyBytes)
            ? upload
            : throw new S3Exception(S3ErrorCode.NoSuchUpload, "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.") { Details = [new("UploadId", id)] };
    }

    /// <summary>
    /// CreateMultipartUpload's x-amz-checksum-algorithm: the object then gets a COMPOSITE checksum of its parts'.
    /// A FULL_OBJECT request (a CRC of the whole object, combined from the parts') is not supported: such an upload
    /// completes without an object checksum, as uploads without an algorithm do.
    /// </summary>
    private static ChecksumAlgorithm? RequestedChecksum(S3Context s3)
    {
        if (s3.Header("x-amz-checksum-algorithm") is not { } name)
        {
            return null;
        }
        if (!ChecksumAlgorithms.TryParse(name, out var algorithm))
        {
            throw new S3Exception(S3ErrorCode.InvalidRequest, $"Checksum algorithm {name} is not one of CRC32, CRC32C, CRC64NVME, SHA1, SHA256.");
        }
        return string.Equals(s3.Header("x-amz-checksum-type"), "FULL_OBJECT", StringComparison.OrdinalIgnoreCase) ? null : algorithm;
    }

    /// <summary>The checksum algorithm a part request announces (header, trailer or SDK hint), if any.</summary>
    private static ChecksumAlgorithm? AnnouncedChecksum(S3Context s3)
    {
        if (ChecksumAlgorithms.TryParse(s3.Header("x-amz-trailer"), out var trailer))
        {
            return trailer;
        }
        foreach (var a in ChecksumAlgorithms.All)
        {
            if (s3.Header(ChecksumAlgorithms.HeaderName(a)) is not null)
            {
                return a;
            }
        }
        return ChecksumAlgorithms.TryParse(s3.Header("x-amz-sdk-checksum-algorithm"), out var hinted) ? hinted : null;
    }

    private static int PartNumber(S3Context s3) =>
        int.TryParse(s3.Q("partNumber"), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 10000
            ? n
            : throw new S3Exception(S3ErrorCode.InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive.") { Details = [new("ArgumentName", "partNumber")] };

    public async Task UploadPartAsync(S3Context s3)
    {
        var upload = Upload(s3);
        var number = PartNumber(s3);
        // An upload created with a checksum algorithm takes parts checked with that algorithm only (as S3 does).
        if (ChecksumAlgorithms.TryParse(upload.Attributes.ChecksumName, out var required) && AnnouncedChecksum(s3) is var announced && announced != required)
        {
            throw new S3Exception(S3ErrorCode.InvalidRequest,
                $"The upload was created with checksum algorithm {ChecksumAlgorithms.UpperName(required)}; this part {(announced is { } other ? "uses " + ChecksumAlgorithms.UpperName(other) : "has no checksum")}.");
        }
        await using var body = S3Body.Open(s3, deferMd5: true);
        var part = await store.UploadPartAsync(
            new PartPut(s3.Bucket, upload.UploadId, number, body.Stream, body.Length)
            {
                BeforeCommit = body.BeforeCommitAsync,
                Md5 = () => body.Md5Hex,
                Checksum = () => body.Checksum is { } c ? (ChecksumAlgorithms.HeaderName(c.Algorithm), c.Value) : null,
            },
            s3.Aborted);
        if (!part.Ok)
        {
            throw S3StoreErrors.ToS3(part.Error!, body.Chunked, body.Verifying);
        }
        s3.Response.Headers.ETag = ETags.Quote(part.Value!.Md5Etag);
        body.EchoChecksum(s3);
    }

    /// <summary>UploadPartCopy: a byte range (x-amz-copy-source-range) of an existing object becomes a part.</summary>
    public async Task UploadPartCopyAsync(S3Context s3, string copySource, Func<S3Context, string, BucketRecord> ownedSource)
    {
        var upload = Upload(s3);
        var number = PartNumber(s3);
        var (srcBucket, srcKey) = S3Objects.ParseCopySource(copySource);
        ownedSource(s3, srcBucket);
        using var handle = await store.OpenObjectAsync(srcBucket, srcKey)
            ?? throw new S3Exception(S3ErrorCode.NoSuchKey, "The specified key does not exist.");
        var src = handle.Record;
        S3Objects.CheckCopySourceConditions(s3, src);
        var (start, end) = (0L, src.Size - 1);
        if (s3.Header("x-amz-copy-source-range") is { } range)
        {
            var r = S3Objects.ParseRange(range, src.Size);
            if (r is not { } parsed || range.Trim()[6..].StartsWith('-') || !range.Contains('-', StringComparison.Ordinal) || range.TrimEnd().EndsWith('-'))
            {
                throw new S3Exception(S3ErrorCode.InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy");
            }
            (start, end, _) = parsed;
            // Unlike a GET Range, the copy range is not clamped: its last byte must lie inside the source (test_multipart_copy_invalid_range).
            if (S3Objects.ParseRange(range, long.MaxValue) is { } unclamped && unclamped.Item2 >= src.Size)
            {
                throw new S3Exception(S3ErrorCode.InvalidRange, $"The x-amz-copy-source-range {range} is not within the {src.Size}-byte source object.");
            }
        }
        var length = end - start + 1;
        await using var stream = new VerifyingStream(store.OpenObjectStream(handle, start, end, s3.Aborted), PayloadChecks.None with { ExpectedLength = length });
        var part = await store.UploadPartAsync(new PartPut(s3.Bucket, upload.UploadId, number, stream, length) { Md5 = () => stream.Md5Hex! }, s3.Aborted);
        if (!part.Ok)
        {
            throw S3StoreErrors.ToS3(part.Error!, stream);
        }
        await s3.WriteXmlAsync(S3Responses.CopyPartResult(DateTimeOffset.FromUnixTimeMilliseconds(part.Value!.LastModifiedMs), part.Value.Md5Etag));
    }

    public async Task CompleteAsync(S3Context s3)
    {
        var location = $"{s3.Request.Scheme}://{s3.Request.Host}/{s3.Bucket}/{NanoKv.S3.SigV4.AwsUri.Encode(s3.Key, keepSlash: true)}";
        if (store.GetUpload(s3.Bucket, s3.Q("uploadId") ?? "") is not { } found || !found.Key.AsSpan().SequenceEqual(s3.KeyBytes))
        {
            // A retried Complete whose first answer was lost (or a repeat): if the object those parts make is in place,
            // answer as the first Complete did, as S3 does (test_multipart_upload_small), instead of a NoSuchUpload the
            // client would take for a failed upload.
            if (await AlreadyCompletedAsync(s3) is { } previous)
            {
                await s3.WriteXmlAsync(S3Responses.CompleteMultipartUpload(location, s3.Bucket, s3.Key, previous.Etag, ChecksumAlgorithms.XmlEntry(previous.Attributes.ChecksumName, previous.Attributes.ChecksumValue)));
                return;
            }
            Upload(s3); // throws NoSuchUpload
        }
        var upload = Upload(s3);
        IReadOnlyList<CompletedPart> parts;
        await using (var body = S3Body.Open(s3))
        {
            parts = S3Requests.ParseCompleteMultipartUpload(await S3Requests.LoadAsync(body.Stream, s3.Aborted));
        }
        var checksums = parts.Where(p => p.ChecksumName is not null).ToDictionary(p => p.PartNumber, p => (p.ChecksumName!, p.Checksum!));
        var done = await store.CompleteMultipartUploadAsync(s3.Bucket, upload.UploadId, parts.Select(p => (p.PartNumber, p.ETag)).ToList(), checksums);
        if (!done.Ok)
        {
            throw S3StoreErrors.ToS3(done.Error!);
        }
        logger.LogDebug("S3 multipart {Upload} completed as {Resource} ({Parts} parts)", upload.UploadId, s3.Resource, parts.Count);
        var attributes = done.Value!.Attributes;
        await s3.WriteXmlAsync(S3Responses.CompleteMultipartUpload(location, s3.Bucket, s3.Key, done.Value.Etag, ChecksumAlgorithms.XmlEntry(attributes.ChecksumName, attributes.ChecksumValue)));
    }

    /// <summary>The object when it is exactly the multipart object the request's part list makes, else null.</summary>
    private async Task<S3ObjectRecord?> AlreadyCompletedAsync(S3Context s3)
    {
        string expected;
        try
        {
            await using var body = S3Body.Open(s3);
            var parts = S3Requests.ParseCompleteMultipartUpload(await S3Requests.LoadAsync(body.Stream, s3.Aborted));
            expected = ETags.Multipart(parts.Select(p => p.ETag).ToList());
        }
        catch (Exception e) when (e is S3Exception or FormatException)
        {
            return null;
        }
        using var handle = await store.OpenObjectAsync(s3.Bucket, s3.KeyBytes);
        return handle is not null && handle.Record.Etag == expected ? handle.Record : null;
    }

    public async Task AbortAsync(S3Context s3)
    {
        var upload = Upload(s3);
        if (await store.AbortMultipartUploadAsync(s3.Bucket, upload.UploadId) is { } failed)
        {
            throw S3StoreErrors.ToS3(failed);
        }
        s3.Response.StatusCode = 204;
    }

    public async Task ListPartsAsync(S3Context s3)
    {
        var upload = Upload(s3);
        var maxParts = s3.IntQ("max-parts", 0, 1000) ?? 1000;
        var marker = s3.IntQ("part-number-marker", 0, 10000) ?? 0;
        var parts = store.ListParts(upload.UploadId, marker, maxParts + 1);
        var truncated = parts.Count > maxParts;
        var shown = parts.Take(maxParts).ToList();
        await s3.WriteXmlAsync(S3Responses.ListParts(s3.Bucket, Encoding.UTF8.GetString(upload.Key), upload.UploadId, upload.Owner, marker,
            shown.Count > 0 ? shown[^1].PartNumber : null, maxParts, truncated,
            shown.Select(p => new PartEntry(p.PartNumber, DateTimeOffset.FromUnixTimeMilliseconds(p.LastModifiedMs), p.Md5Etag, p.Size,
                ChecksumAlgorithms.XmlEntry(p.ChecksumName, p.Checksum)))));
    }
}
