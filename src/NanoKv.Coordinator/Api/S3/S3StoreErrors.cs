using NanoKv.Coordinator.Core;
using NanoKv.S3;

namespace NanoKv.Coordinator.Api.S3;

/// <summary>Store failures as the S3 errors clients expect; a body that failed its own checks reports that check's error.</summary>
public static class S3StoreErrors
{
    public static S3Exception ToS3(StoreError e, params Stream?[] bodies)
    {
        // The decoding/verifying streams keep the S3 error that ended the body; the store only saw "input failed".
        foreach (var b in bodies)
        {
            if (b is NanoKv.S3.Payload.AwsChunkedStream { Failure: { } f1 })
            {
                return f1;
            }
            if (b is NanoKv.S3.Payload.VerifyingStream { Failure: { } f2 })
            {
                return f2;
            }
        }
        for (var cause = e.Cause; cause is not null; cause = cause.InnerException)
        {
            if (cause is S3Exception s3)
            {
                return s3;
            }
            if (cause is NanoKv.Metadata.MetaStoreUnavailableException down)
            {
                return S3Server.MetaDown(down);
            }
        }
        var (code, message) = e.Kind switch
        {
            StoreErrorKind.NotFound => (S3ErrorCode.NoSuchKey, "The specified key does not exist."),
            StoreErrorKind.NoSuchBucket => (S3ErrorCode.NoSuchBucket, "The specified bucket does not exist."),
            StoreErrorKind.PreconditionFailed => (S3ErrorCode.PreconditionFailed, "At least one of the pre-conditions you specified did not hold."),
            StoreErrorKind.BucketOwnedByYou => (S3ErrorCode.BucketAlreadyOwnedByYou, "Your previous request to create the named bucket succeeded and you already own it."),
            StoreErrorKind.BucketExists => (S3ErrorCode.BucketAlreadyExists, "The requested bucket name is not available."),
            StoreErrorKind.BucketNotEmpty => (S3ErrorCode.BucketNotEmpty, "The bucket you tried to delete is not empty."),
            StoreErrorKind.InvalidBucketName => (S3ErrorCode.InvalidBucketName, "The specified bucket is not valid."),
            StoreErrorKind.AccessDenied => (S3ErrorCode.AccessDenied, "Access Denied."),
            StoreErrorKind.NoSuchUpload => (S3ErrorCode.NoSuchUpload, "The specified multipart upload does not exist."),
            StoreErrorKind.InvalidPart => (S3ErrorCode.InvalidPart, "One or more of the specified parts could not be found, or its ETag did not match."),
            StoreErrorKind.InvalidPartOrder => (S3ErrorCode.InvalidPartOrder, "The list of parts was not in ascending order."),
            StoreErrorKind.EntityTooSmall => (S3ErrorCode.EntityTooSmall, "Your proposed upload is smaller than the minimum allowed object size."),
            StoreErrorKind.InvalidRange => (S3ErrorCode.InvalidRange, "The requested range is not satisfiable."),
            StoreErrorKind.TooLarge or StoreErrorKind.SizeMismatch => (S3ErrorCode.EntityTooLarge, "Your proposed upload exceeds the maximum allowed size."),
            StoreErrorKind.UploadIncomplete => (S3ErrorCode.IncompleteBody, "You did not provide the number of bytes specified by the Content-Length HTTP header."),
            StoreErrorKind.InvalidBody => (S3ErrorCode.InvalidRequest, "The request body was rejected."),
            StoreErrorKind.KeyExists or StoreErrorKind.WriteInProgress => (S3ErrorCode.ServiceUnavailable, "Another write to this key is in progress; retry."),
            StoreErrorKind.InsufficientStorage => (S3ErrorCode.ServiceUnavailable, "Not enough storage on the volumes."),
            StoreErrorKind.ChecksumMismatch => (S3ErrorCode.InternalError, "A replica stored different bytes than were sent; nothing was committed."),
            _ => (S3ErrorCode.ServiceUnavailable, "Please reduce your request rate or retry: not enough replicas are available."),
        };
        return new S3Exception(code, $"{message} ({e.Detail})");
    }
}
