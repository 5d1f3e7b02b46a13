using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http;

namespace NanoKv.Core;

/// <summary>The JSON error body every endpoint answers with: a stable code and a human sentence.</summary>
public sealed record ApiError(
    [property: JsonPropertyName("error")] string Error,
    [property: JsonPropertyName("detail")] string Detail)
{
    /// <summary>Stable error codes clients may match on; documented in the README.</summary>
    public static class Codes
    {
        public const string InvalidKey = "invalid_key";
        public const string InvalidArgument = "invalid_argument";
        public const string NotFound = "not_found";
        public const string KeyExists = "key_exists";
        public const string WriteInProgress = "write_in_progress";
        public const string InsufficientNodes = "insufficient_nodes";
        public const string ChecksumMismatch = "checksum_mismatch";
        public const string SizeMismatch = "size_mismatch";
        public const string UploadIncomplete = "upload_incomplete";
        public const string UnknownUpload = "unknown_upload";
        public const string UploadConflict = "upload_conflict";
        public const string ReplicaFailed = "replica_failed";
        public const string Unauthorized = "unauthorized";
        public const string Forbidden = "forbidden";
        public const string UnknownSource = "unknown_source";
        public const string InsufficientStorage = "insufficient_storage";
        public const string Injected = "injected_fault";
        public const string Internal = "internal_error";
        public const string Unavailable = "unavailable";
        public const string JobRunning = "job_running";
    }

    /// <summary>An IResult carrying this error as JSON with the given status.</summary>
    public static IResult Result(int status, string code, string detail) =>
        Results.Json(new ApiError(code, detail), statusCode: status);

    public static IResult BadRequest(string code, string detail) => Result(StatusCodes.Status400BadRequest, code, detail);

    public static IResult NotFoundResult(string detail) => Result(StatusCodes.Status404NotFound, Codes.NotFound, detail);

    public static IResult Conflict(string code, string detail) => Result(StatusCodes.Status409Conflict, code, detail);

    public static IResult Unavailable(string code, string detail) => Result(StatusCodes.Status503ServiceUnavailable, code, detail);
}
