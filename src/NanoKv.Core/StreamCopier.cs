using System.Buffers;

namespace NanoKv.Core;

/// <summary>Where a copy failed: reading the source, writing the destination, or cancelled by the caller.</summary>
public enum CopyStatus
{
    Ok,
    InputError,
    OutputError,
    Canceled,
}

/// <summary>Outcome of a copy: bytes moved, BLAKE3 hex of those bytes (when complete), and where it failed.</summary>
public readonly record struct CopyResult(long Bytes, string Etag, CopyStatus Status, Exception? Error)
{
    public bool Ok => Status == CopyStatus.Ok;
}

/// <summary>
/// The one primitive that moves blob bytes (PUT into a volume, pull between volumes, proxy GET, repair,
/// rebalance): pooled buffer, BLAKE3 computed once per byte on the way through, failures classified
/// into a value so callers decide retry vs abort without catching exception types.
/// </summary>
public static class StreamCopier
{
    /// <summary>
    /// 256 KiB: large enough that fsync'd file writes and BLAKE3's SIMD path run at disk speed, small enough
    /// that a thousand concurrent streams stay far below the memory budget.
    /// </summary>
    public const int BufferSize = 256 * 1024;

    /// <summary>Copies src into sink, hashing as it goes; stops with InputError if src yields more than maxBytes.</summary>
    public static async Task<CopyResult> CopyAsync(
        Stream src,
        Func<ReadOnlyMemory<byte>, CancellationToken, ValueTask> sink,
        long maxBytes,
        CancellationToken ct)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        using var hasher = Blake3.Hasher.New();
        long total = 0;
        try
        {
            while (true)
            {
                int filled;
                try
                {
                    filled = await FillAsync(src, buffer, ct);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    return new CopyResult(total, "", CopyStatus.InputError, ex);
                }
                if (filled == 0)
                {
                    return new CopyResult(total, hasher.Finalize().ToString(), CopyStatus.Ok, null);
                }
                total += filled;
                if (total > maxBytes)
                {
                    return new CopyResult(total, "", CopyStatus.InputError, new InvalidDataException($"body is longer than {maxBytes} bytes"));
                }
                hasher.Update(buffer.AsSpan(0, filled));
                try
                {
                    await sink(buffer.AsMemory(0, filled), ct);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    return new CopyResult(total, "", CopyStatus.OutputError, ex);
                }
            }
        }
        catch (OperationCanceledException ex)
        {
            return new CopyResult(total, "", CopyStatus.Canceled, ex);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Copies src into dst.</summary>
    public static Task<CopyResult> CopyAsync(Stream src, Stream dst, CancellationToken ct) =>
        CopyAsync(src, (m, c) => dst.WriteAsync(m, c), long.MaxValue, ct);

    /// <summary>
    /// Copies src to dst while checking it against an expected BLAKE3. Each chunk is written only after the
    /// next one has been read, so the final chunk is held back until the hash is known: on a mismatch the
    /// destination never receives the whole body, and the caller aborts the response — a reader can get a
    /// failed transfer, never silently wrong bytes.
    /// </summary>
    public static async Task<CopyResult> CopyVerifiedAsync(Stream src, Stream dst, string expectedEtag, CancellationToken ct)
    {
        var current = ArrayPool<byte>.Shared.Rent(BufferSize);
        var next = ArrayPool<byte>.Shared.Rent(BufferSize);
        using var hasher = Blake3.Hasher.New();
        long total = 0;
        try
        {
            var held = await FillAsync(src, current, ct);
            hasher.Update(current.AsSpan(0, held));
            total += held;
            while (held > 0)
            {
                var n = await FillAsync(src, next, ct);
                if (n == 0)
                {
                    var etag = hasher.Finalize().ToString();
                    if (!string.Equals(etag, expectedEtag, StringComparison.OrdinalIgnoreCase))
                    {
                        return new CopyResult(total, etag, CopyStatus.InputError, new InvalidDataException($"data hashes to {etag}, expected {expectedEtag}"));
                    }
                    await dst.WriteAsync(current.AsMemory(0, held), ct);
                    return new CopyResult(total, etag, CopyStatus.Ok, null);
                }
                hasher.Update(next.AsSpan(0, n));
                total += n;
                await dst.WriteAsync(current.AsMemory(0, held), ct);
                (current, next) = (next, current);
                held = n;
            }
            var empty = hasher.Finalize().ToString();
            return string.Equals(empty, expectedEtag, StringComparison.OrdinalIgnoreCase)
                ? new CopyResult(0, empty, CopyStatus.Ok, null)
                : new CopyResult(0, empty, CopyStatus.InputError, new InvalidDataException("empty body does not match the expected hash"));
        }
        catch (OperationCanceledException ex)
        {
            return new CopyResult(total, "", CopyStatus.Canceled, ex);
        }
        catch (Exception ex)
        {
            return new CopyResult(total, "", CopyStatus.OutputError, ex);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(current);
            ArrayPool<byte>.Shared.Return(next);
        }
    }

    /// <summary>Reads until the buffer is full or the source ends, so sinks see few, large writes.</summary>
    private static async ValueTask<int> FillAsync(Stream src, byte[] buffer, CancellationToken ct)
    {
        var filled = 0;
        while (filled < buffer.Length)
        {
            var n = await src.ReadAsync(buffer.AsMemory(filled, Math.Min(buffer.Length, BufferSize) - filled), ct);
            if (n == 0)
            {
                break;
            }
            filled += n;
            if (filled >= BufferSize)
            {
                break;
            }
        }
        return filled;
    }
}
