using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using NanoKv.Core.Hashing;
using static NanoKv.Volume.VerifiedPins;

namespace NanoKv.Volume;

/// <summary>How a read-port send ended.</summary>
internal enum ReadOutcome
{
    Sent,
    Corrupt,
    Changed,
}

/// <summary>Awaitable SendPacketsAsync (file elements go out with sendfile on Linux) with a deadline.</summary>
internal sealed class PacketSender() : SocketAsyncEventArgs(unsafeSuppressExecutionContextFlow: true)
{
    private TaskCompletionSource? _done;

    public async Task SendAsync(Socket s, SendPacketsElement[] parts, TimeSpan timeout)
    {
        var done = _done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        SendPacketsElements = parts;
        if (!s.SendPacketsAsync(this))
        {
            Finish();
        }
        // A client that stops reading must not hold the connection (and its locked pages) forever.
        using var deadline = new CancellationTokenSource(timeout);
        using (deadline.Token.Register(s.Dispose))
        {
            await done.Task;
        }
    }

    /// <summary>Waits for a send, ignoring its failure (the transfer is being cut anyway).</summary>
    public static async Task DrainAsync(Task? send)
    {
        try
        {
            if (send is not null)
            {
                await send;
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
        {
        }
    }

    protected override void OnCompleted(SocketAsyncEventArgs e) => Finish();

    private void Finish()
    {
        if (SocketError == SocketError.Success)
        {
            _done!.TrySetResult();
        }
        else
        {
            _done!.TrySetException(new SocketException((int)SocketError));
        }
    }
}

/// <summary>
/// A verified sendfile of a blob that cannot be pinned whole (not all in the page cache, larger than the pin
/// budget, or pins off): the file is mapped and walked in 1 MiB windows; each window is locked (so its pages
/// can be neither evicted nor re-read from disk), hashed, sent from those very pages and unlocked once its
/// send completed, with the next windows read ahead meanwhile. The last window leaves only when the whole
/// hash matched and the inode is untouched. At most two windows are locked per read.
/// </summary>
internal static class WindowedSend
{
    /// <summary>Sends the blob at path; null when it could not start (nothing sent: answer some other way).</summary>
    public static async Task<ReadOutcome?> SendAsync(Socket s, PacketSender sender, string path, string etag, Func<long, long, byte[]> header, TimeSpan timeout)
    {
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.Asynchronous);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        using var file = new FileStream(handle, FileAccess.Read, 0, isAsync: true);
        if (!Stamp.OfHandle(handle, out var stamp) || stamp.Size <= 0)
        {
            return null;
        }
        var length = stamp.Size;
        var addr = Native.mmap(0, (nuint)length, Native.ProtRead, Native.MapShared, (int)handle.DangerousGetHandle(), 0);
        if (addr == -1)
        {
            return null;
        }
        Task? inFlight = null;
        try
        {
            using var hasher = ContentHasher.New();
            var (lockedAt, lockedLength) = (0L, 0L);
            for (long offset = 0; offset < length;)
            {
                var count = Math.Min(SendfileServer.Chunk, length - offset);
                var last = offset + count == length;
                if (!last)
                {
                    _ = Native.madvise(addr + (nint)(offset + count), (nuint)Math.Min(2L * SendfileServer.Chunk, length - offset - count), Native.MadvWillNeed);
                }
                if (Native.mlock(addr + (nint)offset, (nuint)count) != 0)
                {
                    // Locked-memory limit (no CAP_IPC_LOCK): before the first byte another path can answer.
                    return offset == 0 ? null : ReadOutcome.Changed;
                }
                Hash(hasher, addr + (nint)offset, (int)count);
                if (last && !string.Equals(hasher.FinalizeHex(), etag, StringComparison.OrdinalIgnoreCase))
                {
                    await PacketSender.DrainAsync(inFlight); // cut only after the copy is quarantined
                    inFlight = null;
                    return ReadOutcome.Corrupt;
                }
                if (inFlight is not null)
                {
                    await inFlight;
                    _ = Native.munlock(addr + (nint)lockedAt, (nuint)lockedLength);
                }
                if (last && !(Stamp.OfHandle(handle, out var now) && now == stamp))
                {
                    inFlight = null;
                    return ReadOutcome.Changed;
                }
                SendPacketsElement[] parts = offset == 0
                    ? [new SendPacketsElement(header(length, stamp.MtimeNs / 1000)), new SendPacketsElement(file, offset, (int)count, true)]
                    : [new SendPacketsElement(file, offset, (int)count, true)];
                inFlight = sender.SendAsync(s, parts, timeout);
                (lockedAt, lockedLength) = (offset, count);
                offset += count;
            }
            await inFlight!;
            inFlight = null;
            return ReadOutcome.Sent;
        }
        finally
        {
            if (inFlight is { IsCompleted: false })
            {
                s.Dispose(); // cut the transfer; the send then completes with an error
            }
            await PacketSender.DrainAsync(inFlight);
            _ = Native.munmap(addr, (nuint)length); // also unlocks what is still locked
        }
    }

    private static unsafe void Hash(ContentHasher hasher, nint at, int count) => hasher.Update(new ReadOnlySpan<byte>((void*)at, count));
}
