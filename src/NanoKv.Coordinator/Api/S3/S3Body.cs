using System.Globalization;
using NanoKv.Coordinator.Core;
using NanoKv.Core;
using NanoKv.S3;
using NanoKv.S3.Checksums;
using NanoKv.S3.Payload;

namespace NanoKv.Coordinator.Api.S3;

/// <summary>
/// A request body as the store should see it: aws-chunked decoded (chunk and trailer signatures, trailing checksum)
/// and verified at its end (Content-MD5, signed SHA-256, x-amz-checksum-*), with its MD5 computed on the way for the ETag.
/// A failed check fails the read, so the store aborts the write and nothing is committed.
/// </summary>
public sealed class S3Body : IAsyncDisposable
{
    private S3Body(Stream stream, VerifyingStream verifying, AwsChunkedStream? chunked, long? length)
    {
        Stream = stream;
        Verifying = verifying;
        Chunked = chunked;
        Length = length;
    }

    /// <summary>What to hand the store.</summary>
    public Stream Stream { get; }

    public VerifyingStream Verifying { get; }

    public AwsChunkedStream? Chunked { get; }

    /// <summary>The decoded length, when the client announced it.</summary>
    public long? Length { get; }

    /// <summary>The hex MD5 (the ETag of a single-part object); valid after the store read the body to its end.</summary>
    public string Md5Hex => Verifying.Md5Hex ?? throw new InvalidOperationException("the body was not read to its end");

    /// <summary>The verified checksum (header or trailer) to echo back, if the client sent one.</summary>
    public (ChecksumAlgorithm Algorithm, string Value)? Checksum => Chunked?.TrailerChecksum ?? Verifying.Checksum;

    /// <summary>
    /// The store's last check before it commits: the MD5, finished then (the body was opened with deferMd5), against
    /// Content-MD5. A mismatch aborts the write, and the error names BadDigest through <see cref="Verifying"/>.
    /// </summary>
    public async ValueTask<StoreError?> BeforeCommitAsync(CopyResult _) =>
        await Verifying.CompleteAsync() is { } e ? new StoreError(StoreErrorKind.InvalidBody, e.Message) : null;

    /// <param name="s3">The request.</param>
    /// <param name="deferMd5">For a body the store writes: its MD5 finishes in <see cref="BeforeCommitAsync"/>, which the
    /// caller must pass to the store; other bodies (XML) check their Content-MD5 as their end is read.</param>
    public static S3Body Open(S3Context s3, bool deferMd5 = false)
    {
        ServerHost.AllowLargeBody(s3.Http);
        var auth = s3.Auth;
        Stream raw = s3.Request.Body;
        AwsChunkedStream? chunked = null;
        long? length = s3.Request.ContentLength;
        if (auth.IsStreaming)
        {
            length = null;
            if (s3.Header("x-amz-decoded-content-length") is { } d)
            {
                if (!long.TryParse(d, NumberStyles.None, CultureInfo.InvariantCulture, out var decoded))
                {
                    throw new S3Exception(S3ErrorCode.InvalidArgument, "x-amz-decoded-content-length must be a number.");
                }
                length = decoded;
            }
            raw = chunked = new AwsChunkedStream(raw, auth, length, s3.Header("x-amz-trailer"));
        }
        else if (s3.Header("x-amz-decoded-content-length") is not null && s3.Header("Content-Encoding")?.Contains("aws-chunked", StringComparison.OrdinalIgnoreCase) == true)
        {
            throw new S3Exception(S3ErrorCode.InvalidRequest, "aws-chunked bodies need a STREAMING-* x-amz-content-sha256.");
        }
        if (length > ServerHost.MaxObjectBytes)
        {
            throw new S3Exception(S3ErrorCode.EntityTooLarge, $"Your proposed upload exceeds the maximum allowed object size ({ServerHost.MaxObjectBytes} bytes).");
        }
        var checks = PayloadChecks.FromHeaders(s3.Header, auth, length);
        var verifying = new VerifyingStream(raw, checks, deferMd5);
        return new S3Body(verifying, verifying, chunked, length);
    }

    /// <summary>Echoes the verified checksum like S3 does (x-amz-checksum-crc32: ...).</summary>
    public void EchoChecksum(S3Context s3)
    {
        if (Checksum is { } c)
        {
            s3.Response.Headers[ChecksumAlgorithms.HeaderName(c.Algorithm)] = c.Value;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Verifying.DisposeAsync();
        if (Chunked is not null)
        {
            await Chunked.DisposeAsync();
        }
    }
}
