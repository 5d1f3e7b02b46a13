using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using NanoKv.S3.Checksums;
using NanoKv.S3.SigV4;

namespace NanoKv.S3.Payload;

/// <summary>Decodes a <c>Content-Encoding: aws-chunked</c> body as it streams: chained chunk signatures
/// (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]), the trailer and its signature, the trailing x-amz-checksum-*,
/// and x-amz-decoded-content-length. Memory is one pooled buffer whatever the body size. A bad chunk fails the
/// read that completes it; nothing after it is returned, so a writer that aborts on a read error stores nothing.</summary>
public sealed class AwsChunkedStream : Stream
{
    private const int BufferSize = 64 * 1024;
    private const int MaxLine = 4096;

    private readonly Stream _inner;
    private readonly SigV4Auth _auth;
    private readonly long? _decodedLength;
    private readonly bool _signed;
    private readonly bool _hasTrailer;
    private readonly S3Checksum? _trailerChecksum;
    private readonly IncrementalHash? _chunkHash;
    private byte[]? _buf = ArrayPool<byte>.Shared.Rent(BufferSize);
    private int _pos, _len;
    private long _chunkRemaining;
    private string? _chunkSignature;
    private string _previousSignature;
    private long _decoded;
    private State _state = State.ChunkHeader;

    private enum State
    {
        ChunkHeader,
        ChunkData,
        Done,
        Failed,
    }

    /// <param name="inner">The raw request body.</param>
    /// <param name="auth">The verified request (mode, seed signature, signing key).</param>
    /// <param name="decodedLength">x-amz-decoded-content-length, when sent.</param>
    /// <param name="trailer">x-amz-trailer (e.g. "x-amz-checksum-crc32"), required in the trailer modes.</param>
    public AwsChunkedStream(Stream inner, SigV4Auth auth, long? decodedLength, string? trailer)
    {
        if (!auth.IsStreaming)
        {
            throw new ArgumentException("the request is not aws-chunked", nameof(auth));
        }
        _inner = inner;
        _auth = auth;
        _decodedLength = decodedLength;
        _signed = auth.Payload is PayloadMode.StreamingSigned or PayloadMode.StreamingSignedTrailer;
        _hasTrailer = auth.Payload is PayloadMode.StreamingSignedTrailer or PayloadMode.StreamingUnsignedTrailer;
        _previousSignature = auth.Signature;
        _chunkHash = _signed ? IncrementalHash.CreateHash(HashAlgorithmName.SHA256) : null;
        if (_hasTrailer)
        {
            if (trailer is null)
            {
                throw new S3Exception(S3ErrorCode.InvalidRequest, "x-amz-trailer is required with a *-TRAILER payload.");
            }
            if (!ChecksumAlgorithms.TryParse(trailer, out var algo))
            {
                throw new S3Exception(S3ErrorCode.InvalidRequest, $"x-amz-trailer '{trailer}' is not a supported checksum header.");
            }
            _trailerChecksum = S3Checksum.Create(algo);
        }
    }

    /// <summary>The failure that ended decoding, if any (the writer may see it wrapped).</summary>
    public S3Exception? Failure { get; private set; }

    /// <summary>The verified trailing checksum (algorithm, base64) once the body has been read to the end.</summary>
    public (ChecksumAlgorithm Algorithm, string Value)? TrailerChecksum { get; private set; }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => _decodedLength ?? throw new NotSupportedException();
    public override long Position { get => _decoded; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) =>
        throw new NotSupportedException("aws-chunked bodies are read asynchronously");

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (_state == State.Failed)
        {
            throw Failure!;
        }
        try
        {
            while (true)
            {
                switch (_state)
                {
                    case State.Done:
                        return 0;
                    case State.ChunkHeader:
                        await ReadChunkHeaderAsync(cancellationToken);
                        continue;
                    case State.ChunkData:
                        if (_chunkRemaining == 0)
                        {
                            await EndChunkAsync(cancellationToken);
                            continue;
                        }
                        if (destination.IsEmpty)
                        {
                            return 0;
                        }
                        var n = await ReadDataAsync(destination[..(int)Math.Min(destination.Length, _chunkRemaining)], cancellationToken);
                        var span = destination.Span[..n];
                        _chunkHash?.AppendData(span);
                        _trailerChecksum?.Append(span);
                        _chunkRemaining -= n;
                        _decoded += n;
                        if (_chunkRemaining == 0)
                        {
                            // Verify the chunk before handing its last bytes over, so a forged chunk never reads as complete.
                            await EndChunkAsync(cancellationToken);
                        }
                        return n;
                    default:
                        throw new InvalidOperationException();
                }
            }
        }
        catch (S3Exception e)
        {
            Failure ??= e;
            _state = State.Failed;
            throw;
        }
    }

    private async ValueTask ReadChunkHeaderAsync(CancellationToken ct)
    {
        var line = await ReadLineAsync(ct) ?? throw Incomplete();
        var semi = line.IndexOf(';', StringComparison.Ordinal);
        var sizeText = semi < 0 ? line : line[..semi];
        if (!long.TryParse(sizeText, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var size) || size < 0)
        {
            throw new S3Exception(S3ErrorCode.InvalidRequest, $"Malformed aws-chunked chunk header '{Trunc(line)}'.");
        }
        _chunkSignature = null;
        if (semi >= 0)
        {
            var ext = line[(semi + 1)..];
            const string prefix = "chunk-signature=";
            if (ext.StartsWith(prefix, StringComparison.Ordinal))
            {
                _chunkSignature = ext[prefix.Length..].Trim();
            }
        }
        if (_signed && _chunkSignature is null)
        {
            throw new S3Exception(S3ErrorCode.SignatureDoesNotMatch, "A chunk of a signed aws-chunked body has no chunk-signature.");
        }
        if (_decodedLength is { } expected && _decoded + size > expected)
        {
            throw new S3Exception(S3ErrorCode.InvalidRequest, "The aws-chunked body is longer than x-amz-decoded-content-length.");
        }
        _chunkRemaining = size;
        if (size == 0)
        {
            VerifyChunkSignature();
            await FinishAsync(ct);
            return;
        }
        _state = State.ChunkData;
    }

    /// <summary>Each chunk ends with CRLF; its signature covers the previous signature and the chunk's SHA-256.</summary>
    private async ValueTask EndChunkAsync(CancellationToken ct)
    {
        var crlf = await ReadLineAsync(ct) ?? throw Incomplete();
        if (crlf.Length != 0)
        {
            throw new S3Exception(S3ErrorCode.InvalidRequest, "An aws-chunked chunk is longer than its declared size.");
        }
        VerifyChunkSignature();
        _state = State.ChunkHeader;
    }

    private void VerifyChunkSignature()
    {
        if (!_signed)
        {
            return;
        }
        var chunkSha = Convert.ToHexStringLower(_chunkHash!.GetHashAndReset());
        var stringToSign = $"AWS4-HMAC-SHA256-PAYLOAD\n{_auth.AmzDate}\n{_auth.Scope}\n{_previousSignature}\n{SigV4Crypto.EmptySha256}\n{chunkSha}";
        var expected = SigV4Crypto.HmacHex(_auth.SigningKey, stringToSign);
        if (!SigV4Crypto.SignatureEquals(expected, _chunkSignature!))
        {
            throw new S3Exception(S3ErrorCode.SignatureDoesNotMatch, "The chunk signature we calculated does not match the signature you provided.")
            {
                Details = [new("StringToSign", stringToSign)],
            };
        }
        _previousSignature = expected;
    }

    /// <summary>After the zero-length chunk: the trailer (checksum, then its signature when signed) and the final empty line.</summary>
    private async ValueTask FinishAsync(CancellationToken ct)
    {
        var trailers = new List<KeyValuePair<string, string>>();
        string? trailerSignature = null;
        if (_hasTrailer)
        {
            while (true)
            {
                var line = await ReadLineAsync(ct) ?? throw Incomplete();
                if (line.Length == 0)
                {
                    break;
                }
                var colon = line.IndexOf(':', StringComparison.Ordinal);
                if (colon <= 0 || trailers.Count > 16)
                {
                    throw new S3Exception(S3ErrorCode.InvalidRequest, $"Malformed aws-chunked trailer line '{Trunc(line)}'.");
                }
                var name = line[..colon].Trim().ToLowerInvariant();
                var value = line[(colon + 1)..].Trim();
                if (name == "x-amz-trailer-signature")
                {
                    trailerSignature = value;
                }
                else
                {
                    trailers.Add(new(name, value));
                }
            }
        }
        else
        {
            // Without a trailer the body ends with the final chunk's CRLF; tolerate a client that stops right after the header.
            _ = await ReadLineAsync(ct);
        }
        if (_auth.Payload == PayloadMode.StreamingSignedTrailer)
        {
            VerifyTrailerSignature(trailers, trailerSignature);
        }
        if (_trailerChecksum is not null)
        {
            var name = _trailerChecksum.HeaderName;
            var sent = trailers.FirstOrDefault(t => t.Key == name).Value
                ?? throw new S3Exception(S3ErrorCode.InvalidRequest, $"The trailer does not carry {name} announced by x-amz-trailer.");
            var actual = _trailerChecksum.GetBase64();
            if (!string.Equals(sent, actual, StringComparison.Ordinal))
            {
                throw ChecksumMismatch(_trailerChecksum.Algorithm);
            }
            TrailerChecksum = (_trailerChecksum.Algorithm, actual);
        }
        if (_decodedLength is { } expected && _decoded != expected)
        {
            throw Incomplete();
        }
        _state = State.Done;
    }

    private void VerifyTrailerSignature(List<KeyValuePair<string, string>> trailers, string? signature)
    {
        if (signature is null)
        {
            throw new S3Exception(S3ErrorCode.SignatureDoesNotMatch, "The signed trailer has no x-amz-trailer-signature.");
        }
        var canonical = new StringBuilder();
        foreach (var (name, value) in trailers)
        {
            canonical.Append(name).Append(':').Append(value).Append('\n');
        }
        var stringToSign = $"AWS4-HMAC-SHA256-TRAILER\n{_auth.AmzDate}\n{_auth.Scope}\n{_previousSignature}\n{SigV4Crypto.Sha256Hex(canonical.ToString())}";
        var expected = SigV4Crypto.HmacHex(_auth.SigningKey, stringToSign);
        if (!SigV4Crypto.SignatureEquals(expected, signature))
        {
            throw new S3Exception(S3ErrorCode.SignatureDoesNotMatch, "The trailer signature we calculated does not match the signature you provided.")
            {
                Details = [new("StringToSign", stringToSign)],
            };
        }
    }

    public static S3Exception ChecksumMismatch(ChecksumAlgorithm a) =>
        new(S3ErrorCode.BadDigest, $"The {ChecksumAlgorithms.Name(a).ToUpperInvariant()} you specified did not match the calculated checksum.");

    private S3Exception Incomplete() =>
        new(S3ErrorCode.IncompleteBody, $"The request body ended early: {_decoded} decoded bytes"
            + (_decodedLength is { } e ? $" of the {e} announced by x-amz-decoded-content-length." : "."));

    private static string Trunc(string s) => s.Length <= 64 ? s : s[..64] + "...";

    /// <summary>Payload bytes: from the buffer first, then straight from the body into the caller's memory.</summary>
    private async ValueTask<int> ReadDataAsync(Memory<byte> destination, CancellationToken ct)
    {
        if (_len > _pos)
        {
            var n = Math.Min(destination.Length, _len - _pos);
            _buf.AsSpan(_pos, n).CopyTo(destination.Span);
            _pos += n;
            return n;
        }
        var read = await _inner.ReadAsync(destination, ct);
        return read > 0 ? read : throw Incomplete();
    }

    /// <summary>A line ending in LF (CR stripped) from the buffer; null at end of body with nothing buffered.</summary>
    private async ValueTask<string?> ReadLineAsync(CancellationToken ct)
    {
        var buf = _buf ?? throw new ObjectDisposedException(nameof(AwsChunkedStream));
        var scanned = 0;
        while (true)
        {
            var lf = buf.AsSpan(_pos + scanned, _len - _pos - scanned).IndexOf((byte)'\n');
            if (lf >= 0)
            {
                var end = _pos + scanned + lf;
                var lineEnd = end > _pos && buf[end - 1] == '\r' ? end - 1 : end;
                var line = Encoding.ASCII.GetString(buf, _pos, lineEnd - _pos);
                _pos = end + 1;
                return line;
            }
            scanned = _len - _pos;
            if (scanned >= MaxLine)
            {
                throw new S3Exception(S3ErrorCode.InvalidRequest, "An aws-chunked header or trailer line is too long.");
            }
            if (_pos > 0)
            {
                Buffer.BlockCopy(buf, _pos, buf, 0, scanned);
                _len = scanned;
                _pos = 0;
            }
            var n = await _inner.ReadAsync(buf.AsMemory(_len, buf.Length - _len), ct);
            if (n == 0)
            {
                if (_len == _pos)
                {
                    return null;
                }
                throw Incomplete();
            }
            _len += n;
        }
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && _buf is { } buf)
        {
            _buf = null;
            ArrayPool<byte>.Shared.Return(buf);
            _chunkHash?.Dispose();
            _trailerChecksum?.Dispose();
        }
        base.Dispose(disposing);
    }
}
