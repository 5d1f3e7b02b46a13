using System.Text;
using NanoKv.Coordinator.Core;
using NanoKv.S3;
using NanoKv.S3.Xml;

namespace NanoKv.Coordinator.Api.S3;

/// <summary>ListObjectsV2, ListObjects (v1) and ListMultipartUploads; object pages come straight from the store's ordered scan.</summary>
public sealed class S3Listing(ObjectStore store)
{
    public const int MaxKeys = 1000;

    public async Task ListObjectsAsync(S3Context s3, bool v2)
    {
        var prefix = s3.Q("prefix") ?? "";
        var delimiter = s3.Q("delimiter") is { Length: > 0 } d ? d : null;
        var maxKeys = s3.IntQ("max-keys", 0, MaxKeys) ?? MaxKeys;
        var encodingType = s3.Q("encoding-type");
        if (encodingType is not null && encodingType != "url")
        {
            throw new S3Exception(S3ErrorCode.InvalidArgument, "Invalid Encoding Method specified in Request") { Details = [new("ArgumentName", "encoding-type")] };
        }
        string? after;
        string? token = null;
        if (v2)
        {
            token = s3.Q("continuation-token");
            after = token is not null ? DecodeToken(token) : s3.Q("start-after");
            // start-after only matters when it is past the token's position; the token always is (it came from a later page).
        }
        else
        {
            after = s3.Q("marker") is { Length: > 0 } m ? m : null;
        }
        // max-keys=0 is an empty, complete answer (IsTruncated false), as S3 gives it.
        var page = maxKeys == 0 ? new ObjectListing([], [], false, null) : store.ListObjects(s3.Bucket, Encoding.UTF8.GetBytes(prefix), delimiter is null ? null : Encoding.UTF8.GetBytes(delimiter),
            after is null ? null : Encoding.UTF8.GetBytes(after), maxKeys);
        var listing = new ListObjectsPage
        {
            Bucket = s3.Bucket,
            Prefix = prefix,
            Delimiter = delimiter,
            MaxKeys = maxKeys,
            UrlEncode = encodingType == "url",
            IsTruncated = page.Truncated,
            FetchOwner = s3.Q("fetch-owner") == "true",
            Contents = page.Objects.Select(o => new ObjectEntry(Encoding.UTF8.GetString(o.Key), DateTimeOffset.FromUnixTimeMilliseconds(o.Record.LastModifiedMs), o.Record.Etag, o.Record.Size, s3.User)).ToList(),
            CommonPrefixes = page.CommonPrefixes.Select(p => Encoding.UTF8.GetString(p)).ToList(),
            ContinuationToken = token,
            NextContinuationToken = page.Truncated && page.NextMarker is not null ? EncodeToken(page.NextMarker) : null,
            StartAfter = v2 ? s3.Q("start-after") : null,
            Marker = v2 ? "" : s3.Q("marker") ?? "",
            NextMarker = !v2 && page.Truncated && page.NextMarker is not null ? Encoding.UTF8.GetString(page.NextMarker) : null,
        };
        await s3.WriteXmlAsync(v2 ? S3Responses.ListObjectsV2(listing) : S3Responses.ListObjectsV1(listing));
    }

    /// <summary>The token is the last key or common prefix returned, base64url'd (opaque to clients, a seek position for us).</summary>
    private static string EncodeToken(byte[] last) => Convert.ToBase64String(last).Replace('+', '-').Replace('/', '_');

    private static string DecodeToken(string token)
    {
        try
        {
            var b64 = token.Replace('-', '+').Replace('_', '/');
            return Encoding.UTF8.GetString(Convert.FromBase64String(b64));
        }
        catch (FormatException)
        {
            throw new S3Exception(S3ErrorCode.InvalidArgument, "The continuation token provided is incorrect") { Details = [new("ArgumentName", "continuation-token")] };
        }
    }

    /// <summary>Uploads in progress by key then initiation; key-marker/upload-id-marker paging, prefix and delimiter.</summary>
    public async Task ListMultipartUploadsAsync(S3Context s3)
    {
        var prefix = s3.Q("prefix") ?? "";
        var delimiter = s3.Q("delimiter") is { Length: > 0 } d ? d : null;
        var maxUploads = s3.IntQ("max-uploads", 0, MaxKeys) ?? MaxKeys;
        var keyMarker = s3.Q("key-marker") ?? "";
        var uploadIdMarker = s3.Q("upload-id-marker") ?? "";
        var uploads = new List<UploadEntry>();
        var prefixes = new List<string>();
        string? nextKey = null, nextUpload = null;
        var truncated = false;
        foreach (var u in store.ListUploads(s3.Bucket))
        {
            var key = Encoding.UTF8.GetString(u.Key);
            if (!key.StartsWith(prefix, StringComparison.Ordinal))
            {
                continue;
            }
            var cmp = string.CompareOrdinal(key, keyMarker);
            if (keyMarker.Length > 0 && (cmp < 0 || (cmp == 0 && (uploadIdMarker.Length == 0 || string.CompareOrdinal(u.UploadId, uploadIdMarker) <= 0))))
            {
                continue;
            }
            string? common = null;
            if (delimiter is not null && key.IndexOf(delimiter, prefix.Length, StringComparison.Ordinal) is var at and >= 0)
            {
                common = key[..(at + delimiter.Length)];
                if (prefixes.Contains(common))
                {
                    continue;
                }
            }
            if (uploads.Count + prefixes.Count >= maxUploads)
            {
                truncated = true;
                break;
            }
            if (common is not null)
            {
                prefixes.Add(common);
                nextKey = common;
                nextUpload = "";
                continue;
            }
            uploads.Add(new UploadEntry(key, u.UploadId, u.Owner, DateTimeOffset.FromUnixTimeMilliseconds(u.InitiatedMs)));
            (nextKey, nextUpload) = (key, u.UploadId);
        }
        await s3.WriteXmlAsync(S3Responses.ListMultipartUploads(s3.Bucket, prefix, delimiter, keyMarker, uploadIdMarker,
            truncated ? nextKey : null, truncated ? nextUpload : null, maxUploads, truncated, uploads, prefixes));
    }
}
