using System.Buffers;
using System.IO.Pipelines;
using NanoKv.Core.Hashing;

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

    /// <summary>How a file copy wrote its bytes (FileReceiver); Cached for every other copy.</summary>
    public FileWrite Write { get; init; }
}

/// <summary>How an upload reached its file: through the page cache, around it, or through it because the filesystem refused O_DIRECT.</summary>
public enum FileWrite
{
    Cached,
    Direct,
    DirectRefused,
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

    /// <summary>
    /// Copies src into sink, hashing as it goes (unless hash is false: the result's Etag is then empty); stops
    /// with InputError if src yields more than maxBytes.
    /// </summary>
    public static async Task<CopyResult> CopyAsync(
        Stream src,
        Func<ReadOnlyMemory<byte>, CancellationToken, ValueTask> sink,
        long maxBytes,
        CancellationToken ct,
        bool hash = true)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        using var hasher = hash ? ContentHasher.New() : null;
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
                    return new CopyResult(total, hasher?.FinalizeHex() ?? "", CopyStatus.Ok, null);
                }
                total += filled;
                if (total > maxBytes)
                {
                    return new CopyResult(total, "", CopyStatus.InputError, new InvalidDataException($"body is longer than {maxBytes} bytes"));
                }
                hasher?.Update(buffer.AsSpan(0, filled));
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

    /// <summary>Copies src into dst; hash=false when the bytes are checked elsewhere (the Etag is then empty).</summary>
    public static Task<CopyResult> CopyAsync(Stream src, Stream dst, CancellationToken ct, bool hash = true) =>
        CopyAsync(src, (m, c) => dst.WriteAsync(m, c), long.MaxValue, ct, hash);

    /// <summary>
    /// Copies src to dst while checking it against an expected BLAKE3. Each chunk is written only after the
    /// next one has been read (and the one after is read while it is written), so the final chunk is held
    /// back until the hash is known: on a mismatch the
    /// destination never receives the whole body, and the caller aborts the response — a reader can get a
    /// failed transfer, never silently wrong bytes.
    /// </summary>
    public static async Task<CopyResult> CopyVerifiedAsync(Stream src, Stream dst, string expectedEtag, CancellationToken ct)
    {
        // Three buffers: while chunk i goes out, chunk i+2 is read (i+1 being read already proves i is not last).
        byte[][] bufs = [ArrayPool<byte>.Shared.Rent(BufferSize), ArrayPool<byte>.Shared.Rent(BufferSize), ArrayPool<byte>.Shared.Rent(BufferSize)];
        using var hasher = ContentHasher.New();
        long total = 0;
        try
        {
            var held = await FillAsync(src, bufs[0], ct);
            hasher.Update(bufs[0].AsSpan(0, held));
            total += held;
            var ahead = held == 0 ? 0 : await FillAsync(src, bufs[1], ct);
            hasher.Update(bufs[1].AsSpan(0, ahead));
            total += ahead;
            while (ahead > 0)
            {
                var reading = FillAsync(src, bufs[2], ct).AsTask();
                try
                {
                    await dst.WriteAsync(bufs[0].AsMemory(0, held), ct);
                }
                catch
                {
                    await reading.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                    throw;
                }
                var n = await reading;
                hasher.Update(bufs[2].AsSpan(0, n));
                total += n;
                (bufs[0], bufs[1], bufs[2]) = (bufs[1], bufs[2], bufs[0]);
                held = ahead;
                ahead = n;
            }
            var etag = hasher.FinalizeHex();
            if (!string.Equals(etag, expectedEtag, StringComparison.OrdinalIgnoreCase))
            {
                return new CopyResult(total, etag, CopyStatus.InputError, new InvalidDataException($"data hashes to {etag}, expected {expectedEtag}"));
            }
            if (held > 0)
            {
                await dst.WriteAsync(bufs[0].AsMemory(0, held), ct);
            }
            return new CopyResult(total, etag, CopyStatus.Ok, null);
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
            foreach (var b in bufs)
            {
                ArrayPool<byte>.Shared.Return(b);
            }
        }
    }

    /// <summary>
    /// Relays src into a response pipe with no hashing (the bytes are checked elsewhere). The first chunk goes
    /// through a buffer of its own, so nothing reaches the client before a first read succeeded (the caller may
    /// still fail over); after it the response has started and each chunk is read straight into the pipe's
    /// memory: one memmove per byte less than a Stream write (13 % of a coordinator's CPU in an S3 GET).
    /// </summary>
    public static async Task<CopyResult> RelayAsync(Stream src, PipeWriter dst, CancellationToken ct)
    {
        long total = 0;
        try
        {
            var first = ArrayPool<byte>.Shared.Rent(BufferSize);
            try
            {
                int filled;
                try
                {
                    filled = await FillAsync(src, first, ct);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    return new CopyResult(0, "", CopyStatus.InputError, ex);
                }
                if (filled == 0)
                {
                    return new CopyResult(0, "", CopyStatus.Ok, null);
                }
                total = filled;
                if (await WriteOrFailAsync(dst, first.AsMemory(0, filled), ct) is { } failed)
                {
                    return new CopyResult(total, "", CopyStatus.OutputError, failed);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(first);
            }
            while (true)
            {
                int n;
                try
                {
                    n = await FillAsync(src, dst.GetMemory(BufferSize), ct);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    return new CopyResult(total, "", CopyStatus.InputError, ex);
                }
                if (n == 0)
                {
                    return new CopyResult(total, "", CopyStatus.Ok, null);
                }
                dst.Advance(n);
                total += n;
                if (await WriteOrFailAsync(dst, ReadOnlyMemory<byte>.Empty, ct) is { } failed)
                {
                    return new CopyResult(total, "", CopyStatus.OutputError, failed);
                }
            }
        }
        catch (OperationCanceledException ex)
        {
            return new CopyResult(total, "", CopyStatus.Canceled, ex);
        }
    }

    /// <summary>Writes (or, given nothing, flushes what was advanced); the failure when the reader is gone.</summary>
    private static async ValueTask<Exception?> WriteOrFailAsync(PipeWriter dst, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        try
        {
            var result = data.IsEmpty ? await dst.FlushAsync(ct) : await dst.WriteAsync(data, ct);
            return result.IsCompleted || result.IsCanceled ? new IOException("the response was closed") : null;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return ex;
        }
    }

    /// <summary>Reads up to BufferSize bytes of a (rented, possibly larger) buffer; see the Memory overload.</summary>
    private static ValueTask<int> FillAsync(Stream src, byte[] buffer, CancellationToken ct) =>
        FillAsync(src, buffer.AsMemory(0, Math.Min(buffer.Length, BufferSize)), ct);

    /// <summary>Reads until the buffer is full or the source ends, so sinks see few, large writes.</summary>
    internal static async ValueTask<int> FillAsync(Stream src, Memory<byte> buffer, CancellationToken ct)
    {
        var filled = 0;
        while (filled < buffer.Length)
        {
            var n = await src.ReadAsync(buffer[filled..], ct);
            if (n == 0)
            {
                break;
            }
            filled += n;
        }
        return filled;
    }
}
