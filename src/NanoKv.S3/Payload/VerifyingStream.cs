using System.Security.Cryptography;
using NanoKv.Core;
using NanoKv.S3.Checksums;

namespace NanoKv.S3.Payload;

/// <summary>Passes a body through while computing its MD5 (the S3 ETag) and whatever <see cref="PayloadChecks"/> asks for;
/// the read that reaches the end throws the S3 error (BadDigest, XAmzContentSHA256Mismatch, IncompleteBody) on a mismatch,
/// so a writer that aborts on a read failure never commits a body the client did not send. Read by a
/// <see cref="Broadcast"/> pump, the lanes' MD5 takes the pump's chunks in place (<see cref="IChunkObserver"/>).</summary>
public sealed class VerifyingStream : Stream, IChunkObserver
{
    private readonly Stream _inner;
    private readonly PayloadChecks _checks;
    private static int _open;

    // MD5 on the AVX-512 lanes shared by concurrent bodies when several are open, else the runtime's: a lane
    // pass costs about four single blocks, so a body hashed alone there took twice the CPU (measured).
    private readonly LaneMd5? _lanes;
    private readonly IncrementalHash? _md5;
    private int _closed;

    // Observed (the pump lends its chunks): what reads returned since the last chunk, still in the pump's
    // buffer; only the end of the body hashes these itself, the chunk that holds them comes after.
    private bool _observed;
    private readonly List<ReadOnlyMemory<byte>> _unobserved = [];
    private readonly bool _deferMd5;
    private readonly IncrementalHash? _sha256;
    private readonly S3Checksum? _checksum;
    private long _count;
    private bool _done;

    /// <param name="deferMd5">The end of the body leaves the MD5 (and its Content-MD5 check) to <see cref="CompleteAsync"/>,
    /// which the writer calls before it commits: the lanes can then step the last blocks together with other bodies'
    /// while the volumes sync, instead of at once for this body alone.</param>
    public VerifyingStream(Stream inner, PayloadChecks checks, bool deferMd5 = false)
    {
        _inner = inner;
        _checks = checks;
        _deferMd5 = deferMd5;
        _sha256 = checks.Sha256Hex is not null ? IncrementalHash.CreateHash(HashAlgorithmName.SHA256) : null;
        _checksum = checks.Checksum is { } a ? S3Checksum.Create(a) : null;
        var open = Interlocked.Increment(ref _open);
        _lanes = Md5Lanes.Supported && open >= Md5Lanes.MinBodies ? new LaneMd5() : null;
        _md5 = _lanes is null ? IncrementalHash.CreateHash(HashAlgorithmName.MD5) : null;
    }

    /// <summary>Whether this body's MD5 runs on the shared AVX-512 lanes (<see cref="Md5Lanes"/>).</summary>
    public bool HashesOnLanes => _lanes is not null;

    /// <summary>Buffers the lanes hashed in the pump's memory, not copied (for tests).</summary>
    public int ChunksLent => _lanes?.Lent ?? 0;

    /// <summary>MD5 of the whole body, once read to the end (deferred: once <see cref="CompleteAsync"/> succeeded).</summary>
    public byte[]? Md5 { get; private set; }

    /// <summary>Hex MD5 (unquoted), once read to the end.</summary>
    public string? Md5Hex => Md5 is null ? null : Convert.ToHexStringLower(Md5);

    /// <summary>The verified x-amz-checksum-* header value, if one was sent.</summary>
    public (ChecksumAlgorithm Algorithm, string Value)? Checksum => _checks.Checksum is { } a && _done ? (a, _checks.ChecksumValue!) : null;

    public long BytesRead => _count;

    /// <summary>The failure that ended reading, if any (the writer may see it wrapped).</summary>
    public S3Exception? Failure { get; private set; }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => _checks.ExpectedLength ?? throw new NotSupportedException();
    public override long Position { get => _count; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) =>
        throw new NotSupportedException("request bodies are read asynchronously");

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (Failure is not null)
        {
            throw Failure;
        }
        if (_done)
        {
            return 0;
        }
        try
        {
            var n = await _inner.ReadAsync(destination, cancellationToken);
            if (n > 0)
            {
                Append(destination.Span[..n]);
                if (_observed)
                {
                    _unobserved.Add(destination[..n]);
                }
                else if (_lanes is not null)
                {
                    await _lanes.AppendAsync(destination[..n]);
                }
                _count += n;
                if (_checks.ExpectedLength is { } max && _count > max)
                {
                    throw new S3Exception(S3ErrorCode.InvalidRequest, "The request body is longer than its declared length.");
                }
                return n;
            }
            if (destination.IsEmpty)
            {
                return 0;
            }
            await FinishAsync();
            return 0;
        }
        catch (S3Exception e)
        {
            Failure ??= e;
            throw;
        }
    }

    /// <summary>Only the lanes take chunks (the runtime's MD5 hashes each read inline, with nothing to copy).</summary>
    public bool ObserveChunks()
    {
        _observed = _lanes is not null && _count == 0;
        return _observed;
    }

    public async ValueTask ObserveAsync(byte[] buffer, int length, Action release)
    {
        if (_done || Failure is not null || _closed != 0)
        {
            release(); // the end already hashed it (or the body failed)
            return;
        }
        _unobserved.Clear();
        await _lanes!.LendAsync(buffer, length, release);
    }

    private void Append(ReadOnlySpan<byte> span)
    {
        _md5?.AppendData(span);
        _sha256?.AppendData(span);
        _checksum?.Append(span);
    }

    private async ValueTask FinishAsync()
    {
        if (_checks.ExpectedLength is { } expected && _count != expected)
        {
            throw new S3Exception(S3ErrorCode.IncompleteBody, $"You did not provide the number of bytes specified by the Content-Length HTTP header ({_count} of {expected}).");
        }
        foreach (var piece in _unobserved)
        {
            // The pump's last chunk, not yet observed: still its buffer, so copied now (a partial chunk fits the
            // staging buffer, so this does not wait for the body's queued blocks, nor hurry them).
            await _lanes!.AppendAsync(piece);
        }
        _unobserved.Clear();
        if (_sha256 is not null && Convert.ToHexStringLower(_sha256.GetHashAndReset()) != _checks.Sha256Hex)
        {
            throw new S3Exception(S3ErrorCode.XAmzContentSHA256Mismatch, "The provided 'x-amz-content-sha256' header does not match what was computed.");
        }
        if (_checksum is not null && _checksum.GetBase64() != _checks.ChecksumValue)
        {
            throw AwsChunkedStream.ChecksumMismatch(_checksum.Algorithm);
        }
        _done = true;
        if (!_deferMd5)
        {
            await FinishMd5Async();
        }
    }

    /// <summary>
    /// The MD5 of a body read to its end, checked against Content-MD5: null when it matches (<see cref="Md5"/> is
    /// then set), else the BadDigest error (also kept as <see cref="Failure"/>).
    /// </summary>
    public async ValueTask<S3Exception?> CompleteAsync()
    {
        if (!_done)
        {
            return Failure ?? new S3Exception(S3ErrorCode.IncompleteBody, "The request body was not read to its end.");
        }
        try
        {
            await FinishMd5Async();
            return null;
        }
        catch (S3Exception e)
        {
            Failure ??= e;
            return e;
        }
    }

    private async ValueTask FinishMd5Async()
    {
        if (Md5 is not null)
        {
            return;
        }
        var md5 = _lanes is not null ? await _lanes.FinishAsync() : _md5!.GetHashAndReset();
        if (_checks.ContentMd5 is { } want && !CryptographicOperations.FixedTimeEquals(want, md5))
        {
            throw new S3Exception(S3ErrorCode.BadDigest, "The Content-MD5 you specified did not match what we received.");
        }
        Md5 = md5;
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _closed, 1) == 0)
        {
            Interlocked.Decrement(ref _open);
            _md5?.Dispose();
            _lanes?.Dispose();
            _sha256?.Dispose();
            _checksum?.Dispose();
        }
        base.Dispose(disposing);
    }
}
