using System.IO.Pipelines;
using Microsoft.Win32.SafeHandles;
using NanoKv.Core;
using NanoKv.Core.Hashing;

namespace NanoKv.Volume;

/// <summary>
/// Sends a blob while checking it against its stored BLAKE3, with one copy per byte in user space: each
/// chunk is read from the file straight into the response pipe's memory and hashed there, so the bytes
/// hashed are the bytes sent. The final chunk is hashed and compared before it is committed to the pipe,
/// so on a mismatch the client never receives the whole body (the caller aborts the response).
/// </summary>
public static class VerifiedSend
{
    /// <summary>Bytes per read; 256 KiB keeps the syscalls few and memory per GET flat.</summary>
    public const int ChunkSize = 256 * 1024;

    /// <summary>
    /// Bytes per read for a blob of this length. A single large stream is bound by the hand-offs between the
    /// reading thread and Kestrel's sender, one per chunk: 1 MiB chunks from 32 MiB up (measured, 1 GiB at
    /// c=1: 843–897 → 1010–1117 MiB/s). Smaller blobs keep 256 KiB, which is faster under concurrency.
    /// </summary>
    public static int ChunkFor(long length) => length >= 32L * 1024 * 1024 ? 4 * ChunkSize : ChunkSize;

    public static async Task<CopyResult> SendAsync(SafeFileHandle file, long length, PipeWriter writer, string expectedEtag, CancellationToken ct)
    {
        using var hasher = ContentHasher.New();
        long offset = 0;
        var chunk = ChunkFor(length);
        try
        {
            while (offset < length)
            {
                var want = (int)Math.Min(chunk, length - offset);
                var memory = writer.GetMemory(want);
                int n;
                try
                {
                    n = ReadAndHash(file, memory.Span[..Math.Min(memory.Length, want)], offset, hasher);
                }
                catch (IOException ex)
                {
                    return new CopyResult(offset, "", CopyStatus.InputError, ex);
                }
                if (n == 0)
                {
                    return new CopyResult(offset, "", CopyStatus.InputError, new InvalidDataException($"blob ended at {offset} of {length} bytes"));
                }
                offset += n;
                if (offset == length)
                {
                    var etag = hasher.FinalizeHex();
                    if (!string.Equals(etag, expectedEtag, StringComparison.OrdinalIgnoreCase))
                    {
                        // Not advanced: the last chunk never reaches the client.
                        return new CopyResult(offset, etag, CopyStatus.InputError, new InvalidDataException($"data hashes to {etag}, expected {expectedEtag}"));
                    }
                    writer.Advance(n);
                    await writer.FlushAsync(ct);
                    return new CopyResult(offset, etag, CopyStatus.Ok, null);
                }
                writer.Advance(n);
                var flushed = await writer.FlushAsync(ct);
                if (flushed.IsCanceled || flushed.IsCompleted)
                {
                    return new CopyResult(offset, "", CopyStatus.Canceled, new OperationCanceledException("client went away"));
                }
            }
            // Zero-length blob: the hash of nothing must still match.
            var empty = hasher.FinalizeHex();
            return string.Equals(empty, expectedEtag, StringComparison.OrdinalIgnoreCase)
                ? new CopyResult(0, empty, CopyStatus.Ok, null)
                : new CopyResult(0, empty, CopyStatus.InputError, new InvalidDataException($"data hashes to {empty}, expected {expectedEtag}"));
        }
        catch (OperationCanceledException ex)
        {
            return new CopyResult(offset, "", CopyStatus.Canceled, ex);
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException)
        {
            return new CopyResult(offset, "", CopyStatus.OutputError, ex);
        }
    }

    /// <summary>
    /// Sends a pinned blob from its locked pages. With expectedEtag it is the first read: the pages are hashed
    /// as they go out and the last chunk is held until the hash matches; without, the pin was verified before.
    /// </summary>
    public static async Task<CopyResult> SendPinnedAsync(VerifiedPins.Lease pin, PipeWriter writer, string? expectedEtag, CancellationToken ct)
    {
        using var hasher = expectedEtag is null ? null : ContentHasher.New();
        long offset = 0;
        var length = pin.Length;
        var chunk = ChunkFor(length);
        try
        {
            while (offset < length)
            {
                var n = (int)Math.Min(chunk, length - offset);
                CopyPinned(pin, offset, n, writer, hasher);
                offset += n;
                if (offset == length)
                {
                    // Held back until the pinned file is known untouched (a write in place would change these
                    // very pages) and, on a first read, until the hash matches.
                    if (!VerifiedPins.Unchanged(pin))
                    {
                        return new CopyResult(offset, "", CopyStatus.Canceled, new IOException("blob file changed on disk while being sent"));
                    }
                    if (hasher is not null)
                    {
                        var etag = hasher.FinalizeHex();
                        if (!string.Equals(etag, expectedEtag, StringComparison.OrdinalIgnoreCase))
                        {
                            return new CopyResult(offset, etag, CopyStatus.InputError, new InvalidDataException($"data hashes to {etag}, expected {expectedEtag}"));
                        }
                    }
                }
                writer.Advance(n);
                var flushed = await writer.FlushAsync(ct);
                if (offset < length && (flushed.IsCanceled || flushed.IsCompleted))
                {
                    return new CopyResult(offset, "", CopyStatus.Canceled, new OperationCanceledException("client went away"));
                }
            }
            return new CopyResult(offset, expectedEtag ?? "", CopyStatus.Ok, null);
        }
        catch (OperationCanceledException ex)
        {
            return new CopyResult(offset, "", CopyStatus.Canceled, ex);
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException)
        {
            return new CopyResult(offset, "", CopyStatus.OutputError, ex);
        }
    }

    /// <summary>Copies pinned bytes into the pipe's memory (not yet advanced), hashing them first when verifying.</summary>
    private static void CopyPinned(VerifiedPins.Lease pin, long offset, int count, PipeWriter writer, ContentHasher? hasher)
    {
        var source = pin.Slice(offset, count);
        hasher?.Update(source);
        source.CopyTo(writer.GetSpan(count));
    }

    /// <summary>
    /// Fills the span from the file at offset (page-cache hits make a blocking pread cheaper than a thread hop)
    /// and hashes what was read.
    /// </summary>
    private static int ReadAndHash(SafeFileHandle file, Span<byte> into, long offset, ContentHasher hasher)
    {
        var filled = 0;
        while (filled < into.Length)
        {
            var n = RandomAccess.Read(file, into[filled..], offset + filled);
            if (n == 0)
            {
                break;
            }
            filled += n;
        }
        hasher.Update(into[..filled]);
        return filled;
    }
}
