using System.Buffers;
using System.IO.Pipelines;
using Microsoft.Win32.SafeHandles;
using NanoKv.Core.Hashing;

namespace NanoKv.Core;

/// <summary>
/// Writes a request body into a file with no intermediate buffer: large batches are taken straight from the
/// body pipe, hashed where they lie and written with one gathered pwrite (pwritev) per batch.
/// </summary>
public static class FileReceiver
{
    /// <summary>Bytes gathered per write: 256 KiB, the same batch StreamCopier uses.</summary>
    public const int BatchSize = StreamCopier.BufferSize;

    /// <summary>Dirty bytes after which writeback of what was received so far is started (see Durable.StartWriteback).</summary>
    public const long WritebackStep = 8L * 1024 * 1024;

    /// <summary>Copies src into file from offset 0, hashing as it goes; InputError past maxBytes.</summary>
    /// <param name="bypassCache">write around the page cache (<see cref="DirectWriter"/>) where the filesystem allows it</param>
    public static async Task<CopyResult> CopyAsync(PipeReader src, SafeFileHandle file, long maxBytes, CancellationToken ct, bool bypassCache = false)
    {
        using var hasher = ContentHasher.New();
        using var direct = bypassCache ? DirectWriter.TryStart(file) : null;
        var segments = new List<ReadOnlyMemory<byte>>();
        long total = 0;
        long writtenBack = 0;
        try
        {
            while (true)
            {
                ReadResult read;
                try
                {
                    read = await src.ReadAtLeastAsync(BatchSize, ct);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    return new CopyResult(total, "", CopyStatus.InputError, ex);
                }
                var buffer = read.Buffer;
                if (read.IsCanceled)
                {
                    src.AdvanceTo(buffer.Start);
                    return new CopyResult(total, "", CopyStatus.Canceled, new OperationCanceledException());
                }
                if (total + buffer.Length > maxBytes)
                {
                    src.AdvanceTo(buffer.End);
                    return new CopyResult(total + buffer.Length, "", CopyStatus.InputError, new InvalidDataException($"body is longer than {maxBytes} bytes"));
                }
                if (!buffer.IsEmpty)
                {
                    try
                    {
                        if (direct is not null)
                        {
                            foreach (var segment in buffer)
                            {
                                hasher.Update(segment.Span);
                                direct.Append(segment.Span);
                            }
                        }
                        else
                        {
                            segments.Clear();
                            foreach (var segment in buffer)
                            {
                                hasher.Update(segment.Span);
                                segments.Add(segment);
                            }
                            await RandomAccess.WriteAsync(file, segments, total, ct);
                        }
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException)
                    {
                        src.AdvanceTo(buffer.End);
                        return new CopyResult(total, "", CopyStatus.OutputError, ex);
                    }
                    total += buffer.Length;
                    if (direct is null && total - writtenBack >= WritebackStep)
                    {
                        Durable.StartWriteback(file, writtenBack, total - writtenBack);
                        writtenBack = total;
                    }
                }
                src.AdvanceTo(buffer.End);
                if (read.IsCompleted)
                {
                    try
                    {
                        direct?.Finish();
                    }
                    catch (IOException ex)
                    {
                        return new CopyResult(total, "", CopyStatus.OutputError, ex);
                    }
                    var write = !bypassCache ? FileWrite.Cached : direct is null || direct.Refused ? FileWrite.DirectRefused : FileWrite.Direct;
                    return new CopyResult(total, hasher.FinalizeHex(), CopyStatus.Ok, null) { Write = write };
                }
            }
        }
        catch (OperationCanceledException ex)
        {
            return new CopyResult(total, "", CopyStatus.Canceled, ex);
        }
    }
}
