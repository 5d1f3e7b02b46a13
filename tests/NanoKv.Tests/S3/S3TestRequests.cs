using System.Text;
using NanoKv.S3;
using NanoKv.S3.SigV4;

namespace NanoKv.Tests.S3;

/// <summary>AWS's documentation credentials and helpers to build SigV4 requests and aws-chunked bodies from the spec, for unit tests.</summary>
internal static class S3TestRequests
{
    public const string AccessKey = "AKIAIOSFODNN7EXAMPLE";
    public const string SecretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    public static readonly DateTimeOffset ExampleTime = new(2013, 5, 24, 0, 0, 0, TimeSpan.Zero);

    public static S3Users Users => S3Users.Parse($"{AccessKey}:{SecretKey},OTHERKEY:othersecret");

    public static SigV4Verifier Verifier(DateTimeOffset now) => new(Users, new FixedClock(now));

    public static SigV4Request Request(string method, string path, string query, params (string Name, string Value)[] headers)
    {
        var dict = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (n, v) in headers)
        {
            dict[n] = dict.TryGetValue(n, out var old) ? old + "," + v : v;
        }
        return new SigV4Request(method, path, query, name => dict.TryGetValue(name, out var v) ? v : null);
    }

    /// <summary>Signs a header-authenticated request the way the SigV4 spec describes (independent of the verifier's canonicaliser).</summary>
    public static string Authorization(string method, string canonicalUri, string canonicalQuery, (string Name, string Value)[] headers,
        string payloadHash, string amzDate, string region = "us-east-1", string secret = SecretKey, string accessKey = AccessKey)
    {
        var sorted = headers.Select(h => (Name: h.Name.ToLowerInvariant(), Value: h.Value.Trim())).OrderBy(h => h.Name, StringComparer.Ordinal).ToArray();
        var canonicalHeaders = string.Concat(sorted.Select(h => $"{h.Name}:{h.Value}\n"));
        var signedHeaders = string.Join(';', sorted.Select(h => h.Name));
        var canonical = $"{method}\n{canonicalUri}\n{canonicalQuery}\n{canonicalHeaders}\n{signedHeaders}\n{payloadHash}";
        var scope = $"{amzDate[..8]}/{region}/s3/aws4_request";
        var key = SigV4Crypto.SigningKey(secret, amzDate[..8], region, "s3");
        var sts = $"AWS4-HMAC-SHA256\n{amzDate}\n{scope}\n{SigV4Crypto.Sha256Hex(canonical)}";
        return $"AWS4-HMAC-SHA256 Credential={accessKey}/{scope}, SignedHeaders={signedHeaders}, Signature={SigV4Crypto.HmacHex(key, sts)}";
    }

    /// <summary>An aws-chunked body from the spec: signed chunks (seed signature chained) or unsigned, optionally with a trailer.</summary>
    public static byte[] ChunkedBody(byte[] payload, int chunkSize, string? seedSignature, string amzDate, string scope,
        (string Name, string Value)? trailer, bool signTrailer, string secret = SecretKey)
    {
        var key = SigV4Crypto.SigningKey(secret, amzDate[..8], scope.Split('/')[1], "s3");
        var ms = new MemoryStream();
        var prev = seedSignature;
        void Write(string s) => ms.Write(Encoding.ASCII.GetBytes(s));
        for (var off = 0; ; off += chunkSize)
        {
            var len = Math.Max(0, Math.Min(chunkSize, payload.Length - off));
            var chunk = payload.AsSpan(Math.Min(off, payload.Length), len).ToArray();
            if (prev is not null)
            {
                var sts = $"AWS4-HMAC-SHA256-PAYLOAD\n{amzDate}\n{scope}\n{prev}\n{SigV4Crypto.EmptySha256}\n{Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(chunk))}";
                prev = SigV4Crypto.HmacHex(key, sts);
                Write($"{len:x};chunk-signature={prev}\r\n");
            }
            else
            {
                Write($"{len:x}\r\n");
            }
            if (len == 0)
            {
                break;
            }
            ms.Write(chunk);
            Write("\r\n");
        }
        if (trailer is { } t)
        {
            Write($"{t.Name}:{t.Value}\r\n");
            if (signTrailer)
            {
                var sts = $"AWS4-HMAC-SHA256-TRAILER\n{amzDate}\n{scope}\n{prev}\n{SigV4Crypto.Sha256Hex($"{t.Name}:{t.Value}\n")}";
                Write($"x-amz-trailer-signature:{SigV4Crypto.HmacHex(key, sts)}\r\n");
            }
        }
        Write("\r\n");
        return ms.ToArray();
    }

    internal sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}

/// <summary>Returns at most <paramref name="max"/> bytes per read, to exercise every split of a chunk header or trailer.</summary>
internal sealed class TrickleStream(byte[] data, int max) : Stream
{
    private int _pos;
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => data.Length;
    public override long Position { get => _pos; set => throw new NotSupportedException(); }
    public override void Flush() { }

    public override int Read(byte[] buffer, int offset, int count)
    {
        var n = Math.Min(Math.Min(count, max), data.Length - _pos);
        Array.Copy(data, _pos, buffer, offset, n);
        _pos += n;
        return n;
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var n = Math.Min(Math.Min(buffer.Length, max), data.Length - _pos);
        data.AsSpan(_pos, n).CopyTo(buffer.Span);
        _pos += n;
        return ValueTask.FromResult(n);
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
