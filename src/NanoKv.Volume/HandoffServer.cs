using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using NanoKv.Core;
using NanoKv.Core.Hashing;

namespace NanoKv.Volume;

/// <summary>
/// The volume's end of <see cref="SocketHandoff"/>: a unix socket in the data folder where a coordinator on this
/// host passes a client's connection with the response head of a full read. A blob this volume holds verified
/// and pinned (or verified and wholly mapped) in the committed version, etag and size is sent straight into the
/// client's socket with sendfile — the read port's path for native GETs — the last chunk only after the pages
/// are checked unchanged. A first read is checked whole before the first byte (pinned when its pages are cached,
/// else mapped up to <see cref="FirstReadMaxBytes"/>, then kept as a loose pin): a bad copy answers Corrupt and the coordinator
/// reads another replica. Anything else is declined before the first byte, and the coordinator relays instead.
/// </summary>
public sealed class HandoffServer : IAsyncDisposable
{
    /// <summary>The socket's name in the data folder.</summary>
    public const string FileName = "handoff.sock";

    // sun_path holds 108 bytes with its terminator; a longer path cannot be bound.
    private const int MaxPath = 107;
    private const int MaxConcurrent = 64;

    /// <summary>First reads not cached up to this size are mapped and verified whole before the first byte; larger ones
    /// stay with the read port, which hashes as it sends (a whole-blob check first would delay the first byte).</summary>
    public const long FirstReadMaxBytes = 8 << 20;
    private static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(5);

    private readonly VolumeServer _volume;
    private readonly Socket _listener;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _slots = new(MaxConcurrent);
    private Task _accepting = Task.CompletedTask;

    private HandoffServer(VolumeServer volume, Socket listener, string path, ILogger logger)
    {
        _volume = volume;
        _listener = listener;
        Path = path;
        _logger = logger;
    }

    /// <summary>The socket's path (what the volume announces to coordinators).</summary>
    public string Path { get; }

    /// <summary>Binds dataDir/handoff.sock (replacing a stale one); null where it cannot (not Linux, path too long).</summary>
    public static HandoffServer? Start(VolumeServer volume, string dataDir, ILogger logger)
    {
        var path = System.IO.Path.GetFullPath(System.IO.Path.Combine(dataDir, FileName));
        if (!OperatingSystem.IsLinux() || System.Text.Encoding.UTF8.GetByteCount(path) > MaxPath)
        {
            logger.LogInformation("no handoff socket (needs Linux and a data path under {Max} bytes): coordinators relay reads", MaxPath);
            return null;
        }
        File.Delete(path); // a previous run's socket file; binding over it fails
        var listener = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite); // same user only
            listener.Listen(128);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        var server = new HandoffServer(volume, listener, path, logger);
        server._accepting = Task.Run(server.AcceptLoopAsync);
        return server;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _accepting;
        try
        {
            File.Delete(Path);
        }
        catch (IOException)
        {
        }
        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket conn;
            try
            {
                conn = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stop.IsCancellationRequested)
                {
                    return;
                }
                continue;
            }
            if (!_slots.Wait(0))
            {
                // Busy: decline (a bare hang-up would read as a volume that died mid-send, and cut the response).
                SocketHandoff.Reply((int)conn.Handle, RelayOutcome.NotStarted, "volume busy");
                conn.Dispose();
                continue;
            }
            _ = BlockingThreads.Run(() => Serve(conn));
        }
    }

    /// <summary>One handoff on a blocking thread (the sends wait in poll, as the coordinator's relay does).</summary>
    private void Serve(Socket conn)
    {
        var client = -1;
        var channel = (int)conn.Handle;
        // Every path answers: only a volume that dies hangs up without one, and the coordinator reads that as a cut.
        (RelayOutcome Outcome, string? Why) answer = (RelayOutcome.NotStarted, "no request within the timeout");
        try
        {
            var pfd = new SocketNative.PollFd { Fd = channel, Events = SocketNative.POLLIN };
            if (SocketNative.poll(ref pfd, 1, (int)RequestTimeout.TotalMilliseconds) > 0)
            {
                var buffer = new byte[SocketHandoff.MaxMessage];
                var n = SocketHandoff.Receive(channel, buffer, out client);
                answer = n <= 0 ? (RelayOutcome.NotStarted, "no request")
                    : client < 0 ? (RelayOutcome.NotStarted, "no connection was passed")
                    : Handle(client, buffer.AsSpan(0, n));
            }
        }
        catch (Exception ex)
        {
            // Handle throws only before the first byte (Send reports its failures as outcomes).
            _logger.LogError(ex, "handoff failed");
            answer = (RelayOutcome.NotStarted, ex.Message);
        }
        finally
        {
            SocketHandoff.Reply(channel, answer.Outcome, answer.Why);
            if (client >= 0)
            {
                _ = SocketNative.close(client);
            }
            conn.Dispose();
            _slots.Release();
        }
    }

    private (RelayOutcome, string?) Handle(int client, ReadOnlySpan<byte> message)
    {
        var volume = _volume;
        if (SocketHandoff.Decode(message, out var presented) is not { } r)
        {
            return (RelayOutcome.NotStarted, "malformed handoff request");
        }
        if (volume.Options.Secret is { Length: > 0 } secret && !ClusterAuth.HasSecret(presented, secret))
        {
            return (RelayOutcome.NotStarted, "wrong cluster secret");
        }
        if (!volume.Options.VerifyReads || volume.Faults.IsArmed("get"))
        {
            return (RelayOutcome.NotStarted, "reads here take the read port's path");
        }
        var path = volume.Store.BlobPath(r.Key);
        if (!string.Equals(BlobStore.StoredEtag(path), r.Etag, StringComparison.OrdinalIgnoreCase))
        {
            return (RelayOutcome.NotStarted, "not this version here");
        }
        // A blob verified before goes out from its pin. A first read pins the blob when its pages are cached, or
        // (up to FirstReadMaxBytes) maps it, and checks it whole before the first byte: a bad copy is
        // declined and the coordinator reads another replica. A larger first read not cached stays with the read
        // port, which hashes as it goes (and pins it).
        var verified = true;
        var lease = volume.Pins.TryAcquire(path, allowLoose: true);
        if (lease is null)
        {
            verified = false;
            lease = volume.Pins.TryPin(path);
        }
        if (lease is null)
        {
            return r.Size <= FirstReadMaxBytes ? SendMappedFirstRead(client, r, path) : (RelayOutcome.NotStarted, "not verified and pinned here");
        }
        using var held = lease;
        if (lease.Pin.Stamp.MtimeNs / 1000 != r.Version || lease.Length != r.Size || !VerifiedPins.Intact(lease))
        {
            return (RelayOutcome.NotStarted, "not this version here");
        }
        if (!verified)
        {
            using var hasher = ContentHasher.New();
            if (!MappedSend.Matches(hasher, lease.Pin.Address, lease.Length, r.Etag))
            {
                _ = volume.OnCorruptReadAsync(r.Key, $"pinned data hashes differently from the stored BLAKE3 {r.Etag}");
                return (RelayOutcome.Corrupt, "this replica's copy fails its BLAKE3");
            }
            volume.Pins.Commit(lease); // verified: later reads send from the pin without hashing
        }
        var (outcome, why) = Send(client, r.Head, (int)lease.Handle.DangerousGetHandle(), lease.Length, () => VerifiedPins.Intact(lease));
        if (outcome == RelayOutcome.Sent)
        {
            volume.Metrics.SendfileReads.WithLabels(verified ? "handoff" : "handoff-verified").Inc();
            volume.Metrics.BytesOut.WithLabels("sendfile").Inc(lease.Length);
        }
        return (outcome, why);
    }

    /// <summary>
    /// A first read of a blob up to <see cref="FirstReadMaxBytes"/> whose pages are not all cached: mapped (not
    /// locked, populated in one call), hashed whole through the mapping, and only then sent with sendfile, the last
    /// chunk once the file is unchanged and every mapped page still present. Sent, the mapping is kept as a loose pin
    /// (see <see cref="VerifiedPins"/>), as the read port keeps its windowed reads: the next read of the blob sends
    /// without hashing again. (A copy read into memory kept nothing, so in a mixed load every blob was hashed twice.)
    /// Nothing goes out unless the bytes match the committed BLAKE3.
    /// </summary>
    private (RelayOutcome, string?) SendMappedFirstRead(int client, HandoffRequest r, string path)
    {
        SafeFileHandle file;
        try
        {
            file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return (RelayOutcome.NotStarted, "not this version here");
        }
        if (!VerifiedPins.Stamp.OfHandle(file, out var stamp) || stamp.MtimeNs / 1000 != r.Version || stamp.Size != r.Size || stamp.Size <= 0)
        {
            file.Dispose();
            return (RelayOutcome.NotStarted, "not this version here");
        }
        var length = (nuint)stamp.Size;
        var fd = (int)file.DangerousGetHandle();
        var addr = VerifiedPins.Native.mmap(0, length, VerifiedPins.Native.ProtRead, VerifiedPins.Native.MapShared | VerifiedPins.Native.MapPopulate, fd, 0);
        if (addr == -1)
        {
            file.Dispose();
            return (RelayOutcome.NotStarted, "the blob could not be mapped");
        }
        var kept = false;
        try
        {
            using (var hasher = ContentHasher.New())
            {
                if (!MappedSend.Matches(hasher, addr, stamp.Size, r.Etag))
                {
                    _ = _volume.OnCorruptReadAsync(r.Key, $"read data hashes differently from the stored BLAKE3 {r.Etag}");
                    return (RelayOutcome.Corrupt, "this replica's copy fails its BLAKE3");
                }
            }
            var (outcome, why) = Send(client, r.Head, fd, stamp.Size,
                () => VerifiedPins.Stamp.OfHandle(file, out var now) && now == stamp && VerifiedPins.AllPresent(addr, stamp.Size));
            if (outcome == RelayOutcome.Sent)
            {
                _volume.Metrics.SendfileReads.WithLabels("handoff-verified").Inc();
                _volume.Metrics.BytesOut.WithLabels("sendfile").Inc(stamp.Size);
                kept = _volume.Pins.LooseBudget > 0 && _volume.Pins.Adopt(path, file, addr, stamp); // the pin owns file and mapping now
            }
            return (outcome, why);
        }
        finally
        {
            if (!kept)
            {
                _ = VerifiedPins.Native.munmap(addr, length);
                file.Dispose();
            }
        }
    }

    /// <summary>
    /// Head, then the file with sendfile: all but the last chunk corked (full segments only), then the last one
    /// once the pages are checked unchanged. Once the head went out the outcome is never NotStarted.
    /// </summary>
    private static (RelayOutcome, string?) Send(int client, byte[] head, int file, long length, Func<bool> unchanged)
    {
        var waitMs = (int)IdleTimeout.TotalMilliseconds;
        _ = SocketNative.Cork(client, true);
        try
        {
            for (var at = 0; at < head.Length;)
            {
                var n = SocketNative.send(client, ref head[at], (nuint)(head.Length - at), SocketNative.MSG_NOSIGNAL | SocketNative.MSG_DONTWAIT);
                if (n > 0)
                {
                    at += (int)n;
                }
                else if (SocketNative.WaitReady(client, SocketNative.POLLOUT, waitMs) is { } error)
                {
                    return (RelayOutcome.ClientGone, error);
                }
            }
            var tail = Math.Min(length, SendfileServer.Chunk);
            long offset = 0;
            while (offset < length)
            {
                var last = offset >= length - tail;
                if (last && offset == length - tail)
                {
                    if (!unchanged())
                    {
                        return (RelayOutcome.SourceCut, "the blob changed on disk during the read");
                    }
                    _ = SocketNative.Cork(client, false); // the tail leaves at once
                }
                var end = last ? length : length - tail;
                var n = SocketNative.sendfile(client, file, ref offset, (nuint)Math.Min(end - offset, 1L << 30));
                if (n > 0)
                {
                    continue; // sendfile advanced offset
                }
                if (n == 0)
                {
                    return (RelayOutcome.SourceCut, "the blob ended early");
                }
                if (SocketNative.WaitReady(client, SocketNative.POLLOUT, waitMs) is { } error)
                {
                    return (RelayOutcome.ClientGone, error);
                }
            }
            return (RelayOutcome.Sent, null);
        }
        finally
        {
            _ = SocketNative.Cork(client, false);
        }
    }
}
