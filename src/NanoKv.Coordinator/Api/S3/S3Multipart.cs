using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using NanoKv.Coordinator.Core;
using NanoKv.Metadata;
using NanoKv.S3;
using NanoKv.S3.Payload;
using NanoKv.S3.Xml;

namespace NanoKv.Coordinator.Api.S3;

/// <summary>CreateMultipartUpload, UploadPart, UploadPartCopy, CompleteMultipartUpload, AbortMultipartUpload, ListParts.
/// Parts are replicated blobs written by the store with the same 2PC as objects; completion is one metadata write.</summary>
public sealed class S3Multipart(ObjectStore store, ILogger logger)
{
    public async Task CreateAsync(S3Context s3)
    {
        var created = store.CreateMultipartUpload(s3.Bucket, s3.KeyBytes, s3.User, S3Attributes.FromRequest(s3));
        if (!created.Ok)
        {
            throw S3StoreErrors.ToS3(created.Error!);
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

    private static int PartNumber(S3Context s3) =>
        int.TryParse(s3.Q("partNumber"), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 10000
            ? n
            : throw new S3Exception(S3ErrorCode.InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive.") { Details = [new("ArgumentName", "partNumber")] };

    public async Task UploadPartAsync(S3Context s3)
    {
        var upload = Upload(s3);
        var number = PartNumber(s3);
        await using var body = S3Body.Open(s3);
        var part = await store.UploadPartAsync(new PartPut(s3.Bucket, upload.UploadId, number, body.Stream, body.Length) { Md5 = () => body.Md5Hex }, s3.Aborted);
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
            if (await AlreadyCompletedEtagAsync(s3) is { } etag)
            {
                await s3.WriteXmlAsync(S3Responses.CompleteMultipartUpload(location, s3.Bucket, s3.Key, etag));
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
        var done = await store.CompleteMultipartUploadAsync(s3.Bucket, upload.UploadId, parts.Select(p => (p.PartNumber, p.ETag)).ToList());
        if (!done.Ok)
        {
            throw S3StoreErrors.ToS3(done.Error!);
        }
        logger.LogDebug("S3 multipart {Upload} completed as {Resource} ({Parts} parts)", upload.UploadId, s3.Resource, parts.Count);
        await s3.WriteXmlAsync(S3Responses.CompleteMultipartUpload(location, s3.Bucket, s3.Key, done.Value!.Etag));
    }

    /// <summary>The object's ETag when it is exactly the multipart object the request's part list makes, else null.</summary>
    private async Task<string?> AlreadyCompletedEtagAsync(S3Context s3)
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
        return handle is not null && handle.Record.Etag == expected ? expected : null;
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
            shown.Select(p => new PartEntry(p.PartNumber, DateTimeOffset.FromUnixTimeMilliseconds(p.LastModifiedMs), p.Md5Etag, p.Size))));
    }
}
