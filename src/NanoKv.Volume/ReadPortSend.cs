using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using NanoKv.Core.Hashing;
using static NanoKv.Volume.VerifiedPins;

namespace NanoKv.Volume;

/// <summary>How a read-port send ended.</summary>
internal enum ReadOutcome
{
    /// <summary>Nothing was sent: another path may still answer.</summary>
    NotStarted,
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
/// The read port's one send loop: header + a blob whose bytes are mapped at an address, sent with sendfile from
/// the same file; the last chunk only leaves when the whole hash matched (with an expected BLAKE3) and the file
/// is unchanged. A pinned mapping (locked whole) goes in two sends, all but the last chunk and then the last,
/// hashed on another thread meanwhile. lockWindows: the mapping is not locked as a whole, so each 1 MiB window
/// is locked (neither evicted nor re-read from disk) while it is hashed and sent, unlocked once its send
/// completed, and the next windows are read ahead; at most two windows are locked per read; the next window
/// is hashed while the previous one is being sent.
/// </summary>
internal static class MappedSend
{
    public static async Task<ReadOutcome> SendAsync(
        Socket s, PacketSender sender, FileStream file, nint addr, long length, Func<bool> unchanged, byte[] header, string? expectedEtag, bool lockWindows, TimeSpan timeout)
    {
        var chunk = SendfileServer.Chunk;
        var tail = Math.Min(length, chunk);
        using var hasher = expectedEtag is null ? null : ContentHasher.New();
        // A pin locks the whole mapping: the bytes hashed are the bytes sendfile reads, in whatever order. So a
        // big blob is hashed on another thread while all but its last chunk goes out, and the last chunk waits
        // for the match (1 GiB first reads: hash and send overlap instead of alternating per chunk).
        var matched = hasher is null || lockWindows ? null
            : length > tail ? Task.Run(() => Matches(hasher, addr, length, expectedEtag!))
            : Task.FromResult(Matches(hasher, addr, length, expectedEtag!));
        Task? inFlight = null;
        var (lockedAt, lockedLength) = (0L, 0L);
        var corked = false;
        try
        {
            for (long offset = 0; offset < length;)
            {
                var count = !lockWindows
                    ? (length - offset > tail ? length - offset - tail : tail)
                    : Math.Min(chunk, length - offset);
                var last = offset + count == length;
                if (lockWindows)
                {
                    if (!last)
                    {
                        _ = Native.madvise(addr + (nint)(offset + count), (nuint)Math.Min(2L * chunk, length - offset - count), Native.MadvWillNeed);
                    }
                    if (Native.mlock(addr + (nint)offset, (nuint)count) != 0)
                    {
                        // Locked-memory limit (no CAP_IPC_LOCK): before the first byte another path can answer.
                        return offset == 0 ? ReadOutcome.NotStarted : ReadOutcome.Changed;
                    }
                }
                if (hasher is not null && lockWindows)
                {
                    Hash(hasher, addr + (nint)offset, (int)count);
                    if (last && !string.Equals(hasher.FinalizeHex(), expectedEtag, StringComparison.OrdinalIgnoreCase))
                    {
                        await PacketSender.DrainAsync(inFlight); // cut only after the copy is quarantined
                        inFlight = null;
                        return ReadOutcome.Corrupt;
                    }
                }
                if (inFlight is not null)
                {
                    await inFlight;
                    if (lockWindows)
                    {
                        _ = Native.munlock(addr + (nint)lockedAt, (nuint)lockedLength);
                    }
                }
                inFlight = null;
                if (last && matched is not null && !await matched)
                {
                    return ReadOutcome.Corrupt; // everything sent so far has completed: cut after the quarantine
                }
                if (last && !unchanged())
                {
                    return ReadOutcome.Changed;
                }
                // All but the last send go out corked (full-sized segments only); the last one uncorked, so the
                // tail leaves at once. With TCP_NODELAY alone, every sendfile step as the send buffer drains pushes
                // a short segment, and the receiver pays a wakeup and a read for each (16 MiB GETs: +9 % corked).
                if (corked == last)
                {
                    corked = Cork(s, !last);
                }
                var parts = new List<SendPacketsElement>(3);
                if (offset == 0)
                {
                    parts.Add(new SendPacketsElement(header));
                }
                // Large spans go in int-sized pieces (an element's count is an int).
                for (var done = 0L; done < count;)
                {
                    var piece = (int)Math.Min(count - done, 1 << 30);
                    parts.Add(new SendPacketsElement(file, offset + done, piece, true));
                    done += piece;
                }
                inFlight = sender.SendAsync(s, [.. parts], timeout);
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
            if (matched is not null)
            {
                await matched; // the hasher is disposed after this: never under the hashing thread
            }
            if (corked)
            {
                _ = Cork(s, false); // an early return: whatever follows on this connection must not wait for the cork
            }
        }
    }

    /// <summary>Sets TCP_CORK; true when it is set (false when off, or the socket is gone).</summary>
    private static bool Cork(Socket s, bool on)
    {
        const int IpProtoTcp = 6, TcpCork = 3;
        try
        {
            s.SetRawSocketOption(IpProtoTcp, TcpCork, BitConverter.GetBytes(on ? 1 : 0));
            return on;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    private static unsafe void Hash(ContentHasher hasher, nint at, int count) => hasher.Update(new ReadOnlySpan<byte>((void*)at, count));

    /// <summary>Hashes length mapped bytes at at into hasher; true when they hash to expectedEtag.</summary>
    internal static bool Matches(ContentHasher hasher, nint at, long length, string expectedEtag)
    {
        for (var done = 0L; done < length;)
        {
            var piece = (int)Math.Min(length - done, 1 << 30);
            Hash(hasher, at + (nint)done, piece);
            done += piece;
        }
        return string.Equals(hasher.FinalizeHex(), expectedEtag, StringComparison.OrdinalIgnoreCase);
    }
}

/// <summary>
/// A verified sendfile of a blob that cannot be pinned whole (not all in the page cache, larger than the pin
/// budget, or pins off): the file is mapped (not locked) and sent by <see cref="MappedSend"/> in locked windows.
/// </summary>
internal static class WindowedSend
{
    /// <summary>
    /// Sends the blob at path; NotStarted when it could not start (nothing sent: answer some other way), also when
    /// header (given length and version) returns null.
    /// </summary>
    public static async Task<(ReadOutcome Outcome, long Length)> SendAsync(
        Socket s, PacketSender sender, VerifiedPins pins, string path, string etag, Func<long, long, byte[]?> header, TimeSpan timeout)
    {
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.Asynchronous);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return (ReadOutcome.NotStarted, 0);
        }
        using var file = new FileStream(handle, FileAccess.Read, 0, isAsync: true);
        if (!Stamp.OfHandle(handle, out var stamp) || stamp.Size <= 0 || header(stamp.Size, stamp.MtimeNs / 1000) is not { } head)
        {
            return (ReadOutcome.NotStarted, 0);
        }
        var addr = Native.mmap(0, (nuint)stamp.Size, Native.ProtRead, Native.MapShared, (int)handle.DangerousGetHandle(), 0);
        if (addr == -1)
        {
            return (ReadOutcome.NotStarted, 0);
        }
        var kept = false;
        try
        {
            var outcome = await MappedSend.SendAsync(s, sender, file, addr, stamp.Size, () => Stamp.OfHandle(handle, out var now) && now == stamp,
                head, etag, lockWindows: true, timeout);
            // Every page was hashed through this mapping and matched: kept mapped, it is a loose pin (see VerifiedPins).
            kept = outcome == ReadOutcome.Sent && pins.LooseBudget > 0 && Keep(pins, path, handle, addr, stamp);
            return (outcome, stamp.Size);
        }
        finally
        {
            if (!kept)
            {
                _ = Native.munmap(addr, (nuint)stamp.Size); // after the last send drained; also unlocks what is still locked
            }
        }
    }

    /// <summary>Hands the mapping to the pins with a descriptor of its own (this read's closes with its stream).</summary>
    private static bool Keep(VerifiedPins pins, string path, SafeFileHandle handle, nint addr, Stamp stamp)
    {
        _ = Native.munlock(addr, (nuint)stamp.Size); // the last window is still locked; a loose pin locks nothing
        SafeFileHandle own;
        try
        {
            own = File.OpenHandle($"/proc/self/fd/{handle.DangerousGetHandle()}", FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
        if (Stamp.OfHandle(own, out var now) && now == stamp && pins.Adopt(path, own, addr, stamp))
        {
            return true;
        }
        own.Dispose();
        return false;
    }
}
