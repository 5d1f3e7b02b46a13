using System.Text;
using NanoKv.S3;
using NanoKv.S3.Checksums;
using NanoKv.S3.Payload;
using NanoKv.S3.SigV4;
using static NanoKv.Tests.S3.S3TestRequests;

namespace NanoKv.Tests.S3;

/// <summary>aws-chunked decoding: AWS's published signed example, the two trailer forms, tampering, truncation, odd read sizes.</summary>
public sealed class AwsChunkedStreamTests
{
    private const string Scope = "20130524/us-east-1/s3/aws4_request";
    private const string AmzDate = "20130524T000000Z";
    private const string SeedSignature = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";

    /// <summary>The request from "Signature Calculations ... Transferring Payload in Multiple Chunks": 66560 'a's in 64 KiB + 1 KiB chunks.</summary>
    private static SigV4Auth AwsExampleAuth()
    {
        var req = Request("PUT", "/examplebucket/chunkObject.txt", "",
            ("Host", "s3.amazonaws.com"), ("x-amz-date", AmzDate), ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"), ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"), ("Content-Length", "66824"),
            ("Authorization", $"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/{Scope},SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature={SeedSignature}"));
        return Verifier(ExampleTime).Verify(req);
    }

    private static byte[] AwsExampleBody(bool corrupt = false)
    {
        var ms = new MemoryStream();
        foreach (var (size, sig) in new[] { (65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"), (1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"), (0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9") })
        {
            ms.Write(Encoding.ASCII.GetBytes($"{size:x};chunk-signature={sig}\r\n"));
            var data = Enumerable.Repeat((byte)'a', size).ToArray();
            if (corrupt && size == 1024)
            {
                data[10] = (byte)'b';
            }
            ms.Write(data);
            ms.Write("\r\n"u8);
        }
        return ms.ToArray();
    }

    private static async Task<byte[]> ReadAllAsync(Stream s, int bufferSize = 8192)
    {
        var output = new MemoryStream();
        var buf = new byte[bufferSize];
        int n;
        while ((n = await s.ReadAsync(buf)) > 0)
        {
            output.Write(buf, 0, n);
        }
        return output.ToArray();
    }

    [Theory]
    [InlineData(1 << 20, 8192)]
    [InlineData(1, 7)]
    [InlineData(13, 1)]
    public async Task AwsExampleDecodesAndVerifies(int innerReadMax, int bufferSize)
    {
        var body = AwsExampleBody();
        Assert.Equal(66824, body.Length);
        await using var s = new AwsChunkedStream(new TrickleStream(body, innerReadMax), AwsExampleAuth(), 66560, null);
        var data = await ReadAllAsync(s, bufferSize);
        Assert.Equal(66560, data.Length);
        Assert.All(data, b => Assert.Equal((byte)'a', b));
    }

    [Fact]
    public async Task TamperedChunkFailsWithSignatureDoesNotMatch()
    {
        await using var s = new AwsChunkedStream(new MemoryStream(AwsExampleBody(corrupt: true)), AwsExampleAuth(), 66560, null);
        var e = await Assert.ThrowsAsync<S3Exception>(() => ReadAllAsync(s));
        Assert.Equal(S3ErrorCode.SignatureDoesNotMatch, e.Code);
        Assert.Same(e, s.Failure);
    }

    [Fact]
    public async Task TruncatedBodyIsIncomplete()
    {
        var body = AwsExampleBody();
        await using var s = new AwsChunkedStream(new MemoryStream(body[..40000]), AwsExampleAuth(), 66560, null);
        Assert.Equal(S3ErrorCode.IncompleteBody, (await Assert.ThrowsAsync<S3Exception>(() => ReadAllAsync(s))).Code);
    }

    private static SigV4Auth StreamingAuth(PayloadMode mode, string value)
    {
        (string, string)[] headers = [("Host", "h"), ("x-amz-content-sha256", value), ("x-amz-date", AmzDate)];
        var auth = Authorization("PUT", "/b/k", "", headers, value, AmzDate);
        var verified = Verifier(ExampleTime).Verify(Request("PUT", "/b/k", "", [.. headers, ("Authorization", auth)]));
        Assert.Equal(mode, verified.Payload);
        return verified;
    }

    public static TheoryData<ChecksumAlgorithm> Algorithms => new(ChecksumAlgorithms.All);

    [Theory]
    [MemberData(nameof(Algorithms))]
    public async Task SignedTrailerWithEachChecksum(ChecksumAlgorithm algorithm)
    {
        var payload = RandomBytes(200_000);
        var auth = StreamingAuth(PayloadMode.StreamingSignedTrailer, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER");
        var header = ChecksumAlgorithms.HeaderName(algorithm);
        var body = ChunkedBody(payload, 65536, auth.Signature, AmzDate, Scope, (header, Checksum(algorithm, payload)), signTrailer: true);
        await using var s = new AwsChunkedStream(new TrickleStream(body, 3001), auth, payload.Length, header);
        Assert.Equal(payload, await ReadAllAsync(s));
        Assert.Equal(algorithm, s.TrailerChecksum!.Value.Algorithm);

        // A wrong checksum with a valid trailer signature is BadDigest; a forged trailer signature is SignatureDoesNotMatch.
        var wrong = ChunkedBody(payload, 65536, auth.Signature, AmzDate, Scope, (header, Checksum(algorithm, payload[1..])), signTrailer: true);
        await using var w = new AwsChunkedStream(new MemoryStream(wrong), auth, payload.Length, header);
        Assert.Equal(S3ErrorCode.BadDigest, (await Assert.ThrowsAsync<S3Exception>(() => ReadAllAsync(w))).Code);

        var forged = Encoding.ASCII.GetBytes(Encoding.ASCII.GetString(body).Replace(Checksum(algorithm, payload), Checksum(algorithm, payload[1..]), StringComparison.Ordinal));
        await using var f = new AwsChunkedStream(new MemoryStream(forged), auth, payload.Length, header);
        Assert.Equal(S3ErrorCode.SignatureDoesNotMatch, (await Assert.ThrowsAsync<S3Exception>(() => ReadAllAsync(f))).Code);
    }

    [Theory]
    [MemberData(nameof(Algorithms))]
    public async Task UnsignedTrailerWithEachChecksum(ChecksumAlgorithm algorithm)
    {
        var payload = RandomBytes(100_001);
        var auth = StreamingAuth(PayloadMode.StreamingUnsignedTrailer, "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
        var header = ChecksumAlgorithms.HeaderName(algorithm);
        var body = ChunkedBody(payload, 8192, null, AmzDate, Scope, (header, Checksum(algorithm, payload)), signTrailer: false);
        await using var s = new AwsChunkedStream(new TrickleStream(body, 100), auth, null, header);
        Assert.Equal(payload, await ReadAllAsync(s));

        payload[5000] ^= 1;
        var bad = ChunkedBody(payload, 8192, null, AmzDate, Scope, (header, Checksum(algorithm, payload.Select((b, i) => i == 5000 ? (byte)(b ^ 1) : b).ToArray())), signTrailer: false);
        await using var b = new AwsChunkedStream(new MemoryStream(bad), auth, null, header);
        Assert.Equal(S3ErrorCode.BadDigest, (await Assert.ThrowsAsync<S3Exception>(() => ReadAllAsync(b))).Code);
    }

    [Fact]
    public async Task SignedChunksWithoutTrailerFromTheSpecSigner()
    {
        var payload = RandomBytes(150_000);
        var auth = StreamingAuth(PayloadMode.StreamingSigned, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
        var body = ChunkedBody(payload, 65536, auth.Signature, AmzDate, Scope, null, signTrailer: false);
        await using var s = new AwsChunkedStream(new MemoryStream(body), auth, payload.Length, null);
        Assert.Equal(payload, await ReadAllAsync(s));

        // Wrong decoded length announced: the body is longer than announced.
        await using var shortLen = new AwsChunkedStream(new MemoryStream(body), auth, payload.Length - 1, null);
        Assert.Equal(S3ErrorCode.InvalidRequest, (await Assert.ThrowsAsync<S3Exception>(() => ReadAllAsync(shortLen))).Code);
    }

    [Fact]
    public void TrailerModeWithoutXAmzTrailerIsRejected()
    {
        var auth = StreamingAuth(PayloadMode.StreamingUnsignedTrailer, "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
        Assert.Equal(S3ErrorCode.InvalidRequest, Assert.Throws<S3Exception>(() => new AwsChunkedStream(Stream.Null, auth, null, null)).Code);
    }

    internal static string Checksum(ChecksumAlgorithm a, byte[] data)
    {
        using var c = S3Checksum.Create(a);
        c.Append(data);
        return c.GetBase64();
    }

    internal static byte[] RandomBytes(int n)
    {
        var b = new byte[n];
        new Random(n).NextBytes(b);
        return b;
    }
}
