using System.Security.Cryptography;
using System.Text;
using NanoKv.S3;
using NanoKv.S3.Checksums;
using NanoKv.S3.Payload;
using NanoKv.S3.Xml;

namespace NanoKv.Tests.S3;

/// <summary>Checksums against their published check values, and the verifying body wrapper.</summary>
public sealed class PayloadTests
{
    private static readonly byte[] Check = Encoding.ASCII.GetBytes("123456789");

    [Fact]
    public void ChecksumsMatchTheirCatalogueCheckValues()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute(Check));
        Assert.Equal(0xAE8B14860A799888ul, Crc64Nvme.Compute(Check));
        Assert.Equal(Convert.ToBase64String([0xCB, 0xF4, 0x39, 0x26]), AwsChunkedStreamTests.Checksum(ChecksumAlgorithm.Crc32, Check));
        Assert.Equal(Convert.ToBase64String([0xE3, 0x06, 0x92, 0x83]), AwsChunkedStreamTests.Checksum(ChecksumAlgorithm.Crc32C, Check));
        Assert.Equal(Convert.ToBase64String([0xAE, 0x8B, 0x14, 0x86, 0x0A, 0x79, 0x98, 0x88]), AwsChunkedStreamTests.Checksum(ChecksumAlgorithm.Crc64Nvme, Check));
        Assert.Equal(Convert.ToBase64String(SHA1.HashData(Check)), AwsChunkedStreamTests.Checksum(ChecksumAlgorithm.Sha1, Check));

        // Incremental == one shot across odd split points (slice-by-8 tail handling).
        var data = AwsChunkedStreamTests.RandomBytes(10_007);
        var st = Crc64Nvme.Initial;
        var cst = Crc32C.Initial;
        for (var off = 0; off < data.Length; off += 13)
        {
            var part = data.AsSpan(off, Math.Min(13, data.Length - off));
            st = Crc64Nvme.Update(st, part);
            cst = Crc32C.Update(cst, part);
        }
        Assert.Equal(Crc64Nvme.Compute(data), Crc64Nvme.Finish(st));
        Assert.Equal(Crc32C.Compute(data), Crc32C.Finish(cst));
    }

    private static Func<string, string?> Headers(params (string, string)[] h) =>
        name => h.FirstOrDefault(x => string.Equals(x.Item1, name, StringComparison.OrdinalIgnoreCase)).Item2;

    private static async Task<S3Exception?> DrainAsync(Stream s)
    {
        try
        {
            await s.CopyToAsync(Stream.Null);
            return null;
        }
        catch (S3Exception e)
        {
            return e;
        }
    }

    [Fact]
    public async Task VerifyingStreamChecksEveryDigestAtTheEnd()
    {
        var data = AwsChunkedStreamTests.RandomBytes(300_000);
        var md5 = Convert.ToBase64String(MD5.HashData(data));
        var sha = Convert.ToHexStringLower(SHA256.HashData(data));
        var crc = AwsChunkedStreamTests.Checksum(ChecksumAlgorithm.Crc32C, data);

        var ok = PayloadChecks.FromHeaders(Headers(("Content-MD5", md5), ("x-amz-checksum-crc32c", crc)), null, data.Length) with { Sha256Hex = sha };
        await using (var s = new VerifyingStream(new MemoryStream(data), ok))
        {
            Assert.Null(await DrainAsync(s));
            Assert.Equal(Convert.ToHexStringLower(MD5.HashData(data)), s.Md5Hex);
            Assert.Equal(ChecksumAlgorithm.Crc32C, s.Checksum!.Value.Algorithm);
        }

        var other = data.ToArray();
        other[^1] ^= 0xFF;
        await using (var s = new VerifyingStream(new MemoryStream(other), ok with { Sha256Hex = null, Checksum = null }))
        {
            Assert.Equal(S3ErrorCode.BadDigest, (await DrainAsync(s))!.Code);
            Assert.Null(s.Md5);
        }
        await using (var s = new VerifyingStream(new MemoryStream(other), ok with { ContentMd5 = null, Checksum = null }))
        {
            Assert.Equal(S3ErrorCode.XAmzContentSHA256Mismatch, (await DrainAsync(s))!.Code);
        }
        await using (var s = new VerifyingStream(new MemoryStream(other), ok with { ContentMd5 = null, Sha256Hex = null }))
        {
            Assert.Equal(S3ErrorCode.BadDigest, (await DrainAsync(s))!.Code);
        }
        await using (var s = new VerifyingStream(new MemoryStream(data[..1000]), ok with { ContentMd5 = null, Sha256Hex = null, Checksum = null }))
        {
            Assert.Equal(S3ErrorCode.IncompleteBody, (await DrainAsync(s))!.Code);
        }
    }

    [Fact]
    public void MalformedDigestHeadersAreRejectedUpFront()
    {
        Assert.Equal(S3ErrorCode.InvalidDigest, Assert.Throws<S3Exception>(() => PayloadChecks.FromHeaders(Headers(("Content-MD5", "abc")), null, null)).Code);
        Assert.Equal(S3ErrorCode.InvalidRequest, Assert.Throws<S3Exception>(() => PayloadChecks.FromHeaders(Headers(("x-amz-checksum-crc32", "AAAAAAAA")), null, null)).Code);
        Assert.Equal(S3ErrorCode.InvalidRequest, Assert.Throws<S3Exception>(() =>
            PayloadChecks.FromHeaders(Headers(("x-amz-checksum-crc32", "AAAAAA=="), ("x-amz-checksum-sha1", Convert.ToBase64String(new byte[20]))), null, null)).Code);
    }

    [Fact]
    public void ETagsFollowS3()
    {
        var md5s = new[] { "a", "b", "c" }.Select(s => Convert.ToHexStringLower(MD5.HashData(Encoding.ASCII.GetBytes(s)))).ToList();
        var expected = Convert.ToHexStringLower(MD5.HashData(md5s.SelectMany(Convert.FromHexString).ToArray())) + "-3";
        Assert.Equal(expected, ETags.Multipart(md5s.Select(ETags.Quote).ToList()));
        Assert.Equal("\"abc\"", ETags.Quote("abc"));
        Assert.Equal("abc", ETags.Unquote("W/\"abc\""));
        Assert.True(ETags.Matches("\"x\", \"abc\"", "abc"));
        Assert.True(ETags.Matches("*", "abc"));
        Assert.False(ETags.Matches("\"x\"", "abc"));
        Assert.Equal(S3ErrorCode.InvalidPart, Assert.Throws<S3Exception>(() => ETags.Multipart(["zz"])).Code);
    }
}
