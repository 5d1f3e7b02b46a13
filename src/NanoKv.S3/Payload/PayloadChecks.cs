using NanoKv.S3.Checksums;
using NanoKv.S3.SigV4;

namespace NanoKv.S3.Payload;

/// <summary>What a (decoded) body must match at its end: Content-MD5, the signed SHA-256, one x-amz-checksum-* header, its length.</summary>
public sealed record PayloadChecks(long? ExpectedLength, byte[]? ContentMd5, string? Sha256Hex, ChecksumAlgorithm? Checksum, string? ChecksumValue)
{
    public static readonly PayloadChecks None = new(null, null, null, null, null);

    /// <summary>Reads the checks from request headers; throws InvalidDigest/InvalidRequest for malformed values.</summary>
    public static PayloadChecks FromHeaders(Func<string, string?> header, SigV4Auth? auth, long? expectedLength)
    {
        byte[]? md5 = null;
        if (header("Content-MD5") is { } md5Text)
        {
            md5 = new byte[16];
            if (!Convert.TryFromBase64String(md5Text.Trim(), md5, out var n) || n != 16)
            {
                throw new S3Exception(S3ErrorCode.InvalidDigest, "The Content-MD5 you specified is not valid.");
            }
        }
        ChecksumAlgorithm? algo = null;
        string? value = null;
        Span<byte> tmp = stackalloc byte[64];
        foreach (var a in ChecksumAlgorithms.All)
        {
            if (header(ChecksumAlgorithms.HeaderName(a)) is not { } v)
            {
                continue;
            }
            if (algo is not null)
            {
                throw new S3Exception(S3ErrorCode.InvalidRequest, "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.");
            }
            var expectedBytes = a switch
            {
                ChecksumAlgorithm.Crc32 or ChecksumAlgorithm.Crc32C => 4,
                ChecksumAlgorithm.Crc64Nvme => 8,
                ChecksumAlgorithm.Sha1 => 20,
                _ => 32,
            };
            if (!Convert.TryFromBase64String(v.Trim(), tmp, out var got) || got != expectedBytes)
            {
                throw new S3Exception(S3ErrorCode.InvalidRequest, $"Value for {ChecksumAlgorithms.HeaderName(a)} header is invalid.");
            }
            (algo, value) = (a, v.Trim());
        }
        var sha = auth?.Payload == PayloadMode.SignedSha256 ? auth.PayloadSha256Hex : null;
        return new PayloadChecks(expectedLength, md5, sha, algo, value);
    }
}
