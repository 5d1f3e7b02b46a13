using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using NanoKv.Coordinator.Core;
using NanoKv.Metadata;
using NanoKv.S3;
using NanoKv.S3.SigV4;

namespace NanoKv.Coordinator.Api.S3;

/// <summary>Authenticates each request and dispatches it by method, bucket/key and sub-resource; unknown operations are 501.</summary>
public sealed class S3Router(ObjectStore store, S3Options options, SigV4Verifier verifier, ILogger logger)
{
    /// <summary>Sub-resources nanokv does not implement: answering them as a plain GET/PUT would be a wrong success.</summary>
    private static readonly string[] Unsupported =
    [
        "policy", "policyStatus", "cors", "lifecycle", "tagging", "versioning", "versions", "website", "logging", "notification",
        "replication", "encryption", "object-lock", "retention", "legal-hold", "torrent", "restore", "select", "accelerate",
        "requestPayment", "ownershipControls", "publicAccessBlock", "analytics", "inventory", "metrics", "intelligent-tiering",
        "attributes", "renameObject", "session", "metadataConfiguration",
    ];

    private readonly S3Buckets _buckets = new(store, options);
    private readonly S3Objects _objects = new(store, logger);
    private readonly S3Listing _listing = new(store);
    private readonly S3Multipart _multipart = new(store, logger);

    public async Task HandleAsync(S3Context s3)
    {
        s3.Parse(options.Domains);
        if (HttpMethods.IsOptions(s3.Method))
        {
            Preflight(s3);
        }
        s3.Auth = verifier.Verify(s3.ToSigV4Request());
        if (s3.Has("acl") && s3.Bucket.Length > 0)
        {
            await AclAsync(s3);
            return;
        }
        if (Unsupported.FirstOrDefault(s3.Has) is { } sub)
        {
            throw new S3Exception(S3ErrorCode.NotImplemented, $"The '{sub}' sub-resource is not implemented by nanokv.");
        }
        var method = s3.Method;
        if (s3.Bucket.Length == 0)
        {
            if (HttpMethods.IsGet(method))
            {
                await _buckets.ListBucketsAsync(s3);
                return;
            }
            throw new S3Exception(S3ErrorCode.MethodNotAllowed, "The specified method is not allowed against this resource.");
        }
        if (s3.Key.Length == 0)
        {
            await BucketLevelAsync(s3, method);
            return;
        }
        if (System.Text.Encoding.UTF8.GetByteCount(s3.Key) > NanoKv.Core.KeyCodec.MaxKeyBytes)
        {
            throw new S3Exception(S3ErrorCode.KeyTooLongError, "Your key is too long (at most 1024 bytes).");
        }
        OwnedBucket(s3);
        await ObjectLevelAsync(s3, method);
    }

    /// <summary>OPTIONS is a browser's CORS preflight and comes unsigned; with no CORS configuration (nanokv has none) S3
    /// answers it as below, not with a signature error (test_object_raw_get_x_amz_expires_not_expired).</summary>
    private static void Preflight(S3Context s3) =>
        throw (s3.Header("Origin") is null
            ? new S3Exception(S3ErrorCode.BadRequest, "Insufficient information. Origin request header needed.")
            : new S3Exception(S3ErrorCode.CORSResponse, "CORS is not enabled for this bucket."));

    private async Task BucketLevelAsync(S3Context s3, string method)
    {
        if (HttpMethods.IsPut(method))
        {
            await _buckets.CreateBucketAsync(s3);
            return;
        }
        OwnedBucket(s3);
        switch (method)
        {
            case "HEAD":
                s3.Response.Headers["x-amz-bucket-region"] = options.Region;
                return;
            case "DELETE":
                await _buckets.DeleteBucketAsync(s3);
                return;
            case "GET" when s3.Has("location"):
                await _buckets.GetLocationAsync(s3);
                return;
            case "GET" when s3.Has("uploads"):
                await _listing.ListMultipartUploadsAsync(s3);
                return;
            case "GET" when s3.Q("list-type") == "2":
                await _listing.ListObjectsAsync(s3, v2: true);
                return;
            case "GET" when s3.Query.All(p => ListV1Params.Contains(p.Key)):
                await _listing.ListObjectsAsync(s3, v2: false);
                return;
            case "POST" when s3.Has("delete"):
                await _objects.DeleteObjectsAsync(s3);
                return;
            default:
                throw NotImplemented(s3);
        }
    }

    private static readonly HashSet<string> ListV1Params = ["prefix", "delimiter", "marker", "max-keys", "encoding-type", "x-id"];

    private async Task ObjectLevelAsync(S3Context s3, string method)
    {
        var copySource = s3.Header("x-amz-copy-source");
        switch (method)
        {
            case "PUT" when s3.Has("uploadId") && s3.Has("partNumber"):
                await (copySource is null ? _multipart.UploadPartAsync(s3) : _multipart.UploadPartCopyAsync(s3, copySource, OwnedSource));
                return;
            case "PUT" when copySource is not null:
                await _objects.CopyObjectAsync(s3, copySource, OwnedSource);
                return;
            case "PUT":
                await _objects.PutObjectAsync(s3);
                return;
            case "GET" when s3.Has("uploadId"):
                await _multipart.ListPartsAsync(s3);
                return;
            case "GET" or "HEAD":
                await _objects.GetObjectAsync(s3, HttpMethods.IsHead(method));
                return;
            case "DELETE" when s3.Has("uploadId"):
                await _multipart.AbortAsync(s3);
                return;
            case "DELETE":
                await _objects.DeleteObjectAsync(s3);
                return;
            case "POST" when s3.Has("uploads"):
                await _multipart.CreateAsync(s3);
                return;
            case "POST" when s3.Has("uploadId"):
                await _multipart.CompleteAsync(s3);
                return;
            default:
                throw NotImplemented(s3);
        }
    }

    /// <summary>Reading an ACL answers "owner only" (what nanokv enforces); setting one is not supported.</summary>
    private async Task AclAsync(S3Context s3)
    {
        var bucket = OwnedBucket(s3);
        if (!HttpMethods.IsGet(s3.Method))
        {
            throw new S3Exception(S3ErrorCode.NotImplemented, "ACLs cannot be changed: every bucket and object belongs to the user who created the bucket.");
        }
        if (s3.Key.Length > 0 && store.HeadObject(s3.Bucket, s3.KeyBytes) is null)
        {
            throw new S3Exception(S3ErrorCode.NoSuchKey, "The specified key does not exist.");
        }
        await s3.WriteXmlAsync(NanoKv.S3.Xml.S3Responses.OwnerOnlyAcl(bucket.Owner));
    }

    private static S3Exception NotImplemented(S3Context s3) =>
        new(S3ErrorCode.NotImplemented, $"{s3.Method} {s3.Resource}?{s3.RawQuery} is not an operation nanokv implements.");

    /// <summary>The request's bucket, which must exist and belong to the signer.</summary>
    private BucketRecord OwnedBucket(S3Context s3) => Owned(s3, s3.Bucket);

    /// <summary>A copy source bucket, with the same ownership rule.</summary>
    private BucketRecord OwnedSource(S3Context s3, string bucket) => Owned(s3, bucket);

    private BucketRecord Owned(S3Context s3, string bucket)
    {
        var record = store.GetBucket(bucket)
            ?? throw new S3Exception(S3ErrorCode.NoSuchBucket, "The specified bucket does not exist.") { Details = [new("BucketName", bucket)] };
        return record.Owner == s3.User
            ? record
            : throw new S3Exception(S3ErrorCode.AccessDenied, "Access Denied: the bucket belongs to another user.");
    }
}
