namespace NanoKv.S3;

/// <summary>The S3 error codes nanokv answers with; each maps to one HTTP status (see <see cref="S3ErrorCodes.Status"/>).</summary>
public enum S3ErrorCode
{
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    BadDigest,
    BadRequest,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    CORSResponse,
    EntityTooLarge,
    EntityTooSmall,
    IncompleteBody,
    InternalError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidBucketName,
    InvalidDigest,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    InvalidRequest,
    KeyTooLongError,
    MalformedXML,
    MetadataTooLarge,
    MethodNotAllowed,
    MissingContentLength,
    MissingSecurityHeader,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NotImplemented,
    PreconditionFailed,
    RequestTimeTooSkewed,
    ServiceUnavailable,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
}

/// <summary>HTTP status per S3 error code, as AWS documents them.</summary>
public static class S3ErrorCodes
{
    public static int Status(S3ErrorCode code) => code switch
    {
        S3ErrorCode.AccessDenied or S3ErrorCode.InvalidAccessKeyId or S3ErrorCode.SignatureDoesNotMatch
            or S3ErrorCode.RequestTimeTooSkewed or S3ErrorCode.CORSResponse => 403,
        S3ErrorCode.BucketAlreadyExists or S3ErrorCode.BucketAlreadyOwnedByYou or S3ErrorCode.BucketNotEmpty => 409,
        S3ErrorCode.NoSuchBucket or S3ErrorCode.NoSuchKey or S3ErrorCode.NoSuchUpload => 404,
        S3ErrorCode.PreconditionFailed => 412,
        S3ErrorCode.InvalidRange => 416,
        S3ErrorCode.MethodNotAllowed => 405,
        S3ErrorCode.MissingContentLength => 411,
        S3ErrorCode.NotImplemented => 501,
        S3ErrorCode.ServiceUnavailable => 503,
        S3ErrorCode.InternalError => 500,
        _ => 400,
    };
}

/// <summary>A failure a client must see as an S3 error document; thrown by the protocol code, rendered by the front end.</summary>
public sealed class S3Exception(S3ErrorCode code, string message) : Exception(message)
{
    public S3ErrorCode Code { get; } = code;
    public int Status => S3ErrorCodes.Status(Code);

    /// <summary>Extra elements some errors carry (e.g. StringToSign for SignatureDoesNotMatch), written after Message.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Details { get; init; } = [];
}
