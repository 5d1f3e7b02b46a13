using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace NanoKv.Core;

/// <summary>The client's side of a response a relay may write itself, bypassing the HTTP server.</summary>
public interface IRawResponse
{
    /// <summary>The client's connection.</summary>
    Socket Socket { get; }

    /// <summary>Whether the connection stays open after a whole raw response (else it closes, and the head says so).</summary>
    bool KeepAlive { get; }

    /// <summary>Status line and headers for a body of length bytes; null when they cannot be sent raw.</summary>
    byte[]? Head(long length);

    /// <summary>Ends the connection once a raw response went out cut: the server must not write to it again.</summary>
    void Close();

    /// <summary>The whole raw response (the head and bodyBytes) went out: the connection carries on, or closes.</summary>
    void Sent(long bodyBytes);
}

/// <summary>How a relay ended.</summary>
public enum RelayOutcome
{
    /// <summary>Nothing was sent to the client: the caller may serve the read another way.</summary>
    NotStarted,

    /// <summary>The whole body went out.</summary>
    Sent,

    /// <summary>The head (or part of it) went out, then the volume's side failed: the client must see a cut.</summary>
    SourceCut,

    /// <summary>The client went away or stopped reading.</summary>
    ClientGone,

    /// <summary>Nothing was sent: the replica's copy failed its hash (the volume reported it); try another replica.</summary>
    Corrupt,
}

/// <summary>
/// A proxy read without user-space copies: the coordinator asks a volume's read port for a blob over a
/// socket of its own, checks the answer's head (200, verified, the committed etag and size), writes the
/// client's response head itself and then moves the body with splice(2), volume socket → pipe → client
/// socket. A relay through HttpClient and Kestrel copies every byte three times (receive, into the
/// response pipe, send); this copies none. Linux only; NANOKV_SPLICE=0 turns it off (for measurement).
/// </summary>
public static partial class SpliceRelay
{
    /// <summary>
    /// Blobs below this are relayed the ordinary way. A raw response costs a new connection to the volume and
    /// a thread (and, before <see cref="ResponseGate"/>, the client's keep-alive): measured at 1 MiB then, S3 GET
    /// went from 4.15 to 5.01 cluster CPU-s/GiB; at 16 MiB it saves more than that costs. Not measured again
    /// since connections are kept.
    /// </summary>
    public const long MinBytes = 8 << 20;

    private const int MaxHead = 16 * 1024;
    private const int PipeBytes = 1 << 20;
    private static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(60);

    // Each relay holds a thread while it runs (the client side waits in poll); bounded, and past the bound
    // reads take the ordinary path.
    private static readonly SemaphoreSlim Slots = new(64);

    public static bool Enabled { get; } = OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable("NANOKV_SPLICE") != "0";

    /// <summary>
    /// Relays a full, verified read of key from a volume's read port to the client. NotStarted when the volume
    /// answered anything but a verified 200 of the expected etag and size (or was unreachable), or the head
    /// cannot be sent raw: nothing reached the client then.
    /// </summary>
    public static async Task<(RelayOutcome Outcome, string? Error)> RelayAsync(
        Uri target, string? secret, string etag, long size, IRawResponse client, CancellationToken ct)
    {
        if (!Enabled || size < MinBytes || !Slots.Wait(0))
        {
            return (RelayOutcome.NotStarted, "splice relay unavailable");
        }
        try
        {
            var addresses = await Dns.GetHostAddressesAsync(target.Host, ct);
            if (addresses.Length == 0)
            {
                return (RelayOutcome.NotStarted, $"no address for {target.Host}");
            }
            var endpoint = new IPEndPoint(addresses[0], target.Port);
            var request = Encoding.ASCII.GetBytes($"GET {target.PathAndQuery} HTTP/1.1\r\nHost: {target.Authority}\r\n"
                + (string.IsNullOrEmpty(secret) ? "" : $"{ClusterAuth.Header}: {secret}\r\n") + "Connection: close\r\n\r\n");
            return await HoldingClientAsync(client, down => Run(endpoint, request, etag, size, client, down, ct));
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or IOException)
        {
            return (RelayOutcome.NotStarted, ex.Message);
        }
        finally
        {
            Slots.Release();
        }
    }

    /// <summary>
    /// Runs work on a blocking thread (<see cref="BlockingThreads"/>) with the client's descriptor number. The work writes to it by number;
    /// Kestrel disposes the socket when the client goes away, and without a reference held here the number is
    /// closed and can be handed to the next accepted connection while the work still writes a body into it.
    /// With the reference the close waits for the work (Dispose shuts the socket down, which ends a pump).
    /// </summary>
    internal static async Task<(RelayOutcome Outcome, string? Error)> HoldingClientAsync(IRawResponse client, Func<int, (RelayOutcome, string?)> work)
    {
        var handle = client.Socket.SafeHandle;
        var held = false;
        try
        {
            handle.DangerousAddRef(ref held);
        }
        catch (ObjectDisposedException)
        {
            return (RelayOutcome.NotStarted, "the client connection is already closed");
        }
        try
        {
            var down = (int)handle.DangerousGetHandle();
            return await BlockingThreads.Run(() => work(down));
        }
        finally
        {
            if (held)
            {
                handle.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// The whole relay on its own thread, the volume's socket used only by blocking calls and poll. A socket
    /// that ever ran an async operation is in the runtime's epoll set, and then every segment arriving from the
    /// volume wakes the runtime's event thread as well as this one: measured, ~300 context switches in the
    /// coordinator per 16 MiB read, most of its CPU.
    /// </summary>
    private static (RelayOutcome, string?) Run(IPEndPoint endpoint, byte[] request, string etag, long size, IRawResponse client, int down, CancellationToken ct)
    {
        using var upstream = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var up = (int)upstream.Handle;
        // A cancelled request (the client went away, the server stops) shuts the volume's socket down, which
        // ends any wait on it; the descriptor stays open until this method disposes it.
        var registration = ct.Register(() => _ = SocketNative.shutdown(up, SocketNative.SHUT_RDWR));
        try
        {
            var waitMs = (int)IdleTimeout.TotalMilliseconds;
            if (Connect(upstream, endpoint, waitMs) is { } connectError)
            {
                return (RelayOutcome.NotStarted, connectError);
            }
            if (SendAll(up, request, waitMs) is { } sendError)
            {
                return (RelayOutcome.NotStarted, sendError);
            }
            var buffer = new byte[MaxHead];
            var (headEnd, filled, headError) = ReadHead(up, buffer, waitMs);
            if (headError is not null)
            {
                return (RelayOutcome.NotStarted, headError);
            }
            if (headEnd < 0 || !Accepts(buffer.AsSpan(0, headEnd), etag, size))
            {
                return (RelayOutcome.NotStarted, "the read port did not answer a verified 200 of this version");
            }
            if (client.Head(size) is not { } head)
            {
                return (RelayOutcome.NotStarted, "response head not sendable raw");
            }
            var early = filled - headEnd; // body bytes that came with the head
            if (early > size)
            {
                return (RelayOutcome.NotStarted, "the read port sent more than the body");
            }
            // From here the pump watches the client itself; a late cancellation must not read as the volume's fault.
            registration.Dispose();
            return ct.IsCancellationRequested
                ? (RelayOutcome.NotStarted, "the request was cancelled")
                : Pump(up, down, head, buffer.AsMemory(headEnd, early), size - early, client.KeepAlive);
        }
        finally
        {
            registration.Dispose();
        }
    }

    /// <summary>A connect bounded by waitMs without the runtime's async machinery (see Run).</summary>
    private static string? Connect(Socket socket, IPEndPoint endpoint, int waitMs)
    {
        socket.Blocking = false;
        try
        {
            socket.Connect(endpoint);
            return null;
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress)
        {
        }
        catch (SocketException ex)
        {
            return $"connect to {endpoint} failed: {ex.SocketErrorCode}";
        }
        var pfd = new SocketNative.PollFd { Fd = (int)socket.Handle, Events = SocketNative.POLLOUT };
        var ready = SocketNative.poll(ref pfd, 1, waitMs);
        if (ready <= 0)
        {
            return ready == 0 ? $"connect to {endpoint} timed out" : $"connect to {endpoint}: poll failed";
        }
        var error = (SocketError)(int)socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error)!;
        return error == SocketError.Success ? null : $"connect to {endpoint} failed: {error}";
    }

    private static (int HeadEnd, int Filled, string? Error) ReadHead(int fd, byte[] buffer, int waitMs)
    {
        var filled = 0;
        while (filled < buffer.Length)
        {
            var n = SocketNative.recv(fd, ref buffer[filled], (nuint)(buffer.Length - filled), SocketNative.MSG_DONTWAIT);
            if (n == 0)
            {
                return (-1, filled, null);
            }
            if (n < 0)
            {
                if (Wait(fd, SocketNative.POLLIN, waitMs) is { } error)
                {
                    return (-1, filled, error);
                }
                continue;
            }
            var from = Math.Max(0, filled - 3);
            filled += (int)n;
            var end = buffer.AsSpan(from, filled - from).IndexOf("\r\n\r\n"u8);
            if (end >= 0)
            {
                return (from + end + 4, filled, null);
            }
        }
        return (-1, filled, null);
    }

    /// <summary>200, verified by the volume, the committed etag, the expected length.</summary>
    private static bool Accepts(ReadOnlySpan<byte> head, string etag, long size)
    {
        var text = Encoding.ASCII.GetString(head);
        var lines = text.Split("\r\n", StringSplitOptions.RemoveEmptyEntries);
        if (lines.Length == 0 || !lines[0].StartsWith("HTTP/1.1 200 ", StringComparison.Ordinal))
        {
            return false;
        }
        bool verified = false, etagOk = false, lengthOk = false;
        foreach (var line in lines.AsSpan(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                return false;
            }
            var name = line[..colon];
            var value = line[(colon + 1)..].Trim();
            if (name.Equals(NodeHttp.VerifiedHeader, StringComparison.OrdinalIgnoreCase))
            {
                verified = true;
            }
            else if (name.Equals("ETag", StringComparison.OrdinalIgnoreCase))
            {
                etagOk = string.Equals(value.Trim('"'), etag, StringComparison.OrdinalIgnoreCase);
            }
            else if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                lengthOk = long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n == size;
            }
            else if (name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase))
            {
                return false;
            }
        }
        return verified && etagOk && lengthOk;
    }

    /// <summary>Runs on a thread of its own: head and early bytes with send, the rest with splice, waiting in poll.</summary>
    private static (RelayOutcome, string?) Pump(int up, int down, byte[] head, ReadOnlyMemory<byte> early, long remaining, bool keepAlive)
    {
        var waitMs = (int)IdleTimeout.TotalMilliseconds;
        if (SendAll(down, head, waitMs) is { } headError)
        {
            return (RelayOutcome.ClientGone, headError); // part of a head may be out: the client must see a failure
        }
        if (SendAll(down, early.Span, waitMs) is { } earlyError)
        {
            return (RelayOutcome.ClientGone, earlyError);
        }
        Span<int> fds = stackalloc int[2];
        if (SocketNative.pipe2(ref fds[0], SocketNative.O_CLOEXEC | SocketNative.O_NONBLOCK) != 0)
        {
            return (RelayOutcome.SourceCut, $"pipe2 failed: errno {Marshal.GetLastPInvokeError()}");
        }
        var (r, w) = (fds[0], fds[1]);
        try
        {
            _ = SocketNative.fcntl(w, SocketNative.F_SETPIPE_SZ, PipeBytes); // best effort: a bigger pipe means fewer splices
            long inPipe = 0;
            while (remaining > 0 || inPipe > 0)
            {
                if (inPipe == 0)
                {
                    var n = SocketNative.splice(up, IntPtr.Zero, w, IntPtr.Zero, (nuint)Math.Min(remaining, PipeBytes), SocketNative.SPLICE_F_MOVE | SocketNative.SPLICE_F_NONBLOCK);
                    if (n > 0)
                    {
                        inPipe += n;
                        remaining -= n;
                        continue;
                    }
                    if (n == 0)
                    {
                        return (RelayOutcome.SourceCut, $"the volume ended the body {remaining} bytes short");
                    }
                    if (Wait(up, SocketNative.POLLIN, waitMs, watch: down) is { } readError)
                    {
                        return (readError == ClientClosed ? RelayOutcome.ClientGone : RelayOutcome.SourceCut, readError);
                    }
                    continue;
                }
                var m = SocketNative.splice(r, IntPtr.Zero, down, IntPtr.Zero, (nuint)inPipe, SocketNative.SPLICE_F_MOVE | SocketNative.SPLICE_F_NONBLOCK | (remaining > 0 ? SocketNative.SPLICE_F_MORE : 0));
                if (m > 0)
                {
                    inPipe -= m;
                }
                else if (m == 0)
                {
                    return (RelayOutcome.ClientGone, "the client connection closed");
                }
                else if (Wait(down, SocketNative.POLLOUT, waitMs) is { } writeError)
                {
                    return (RelayOutcome.ClientGone, writeError);
                }
            }
            if (!keepAlive)
            {
                _ = SocketNative.shutdown(down, SocketNative.SHUT_WR); // the body is complete: FIN after it
                AwaitDelivery(down, waitMs);
            }
            return (RelayOutcome.Sent, null);
        }
        finally
        {
            _ = SocketNative.close(r);
            _ = SocketNative.close(w);
        }
    }

    /// <summary>
    /// The server closes this connection next, and .NET closes a socket with a pending receive (Kestrel always
    /// has one) abortively: an RST that would destroy whatever is still unsent. So wait until the client's
    /// kernel acknowledged every byte (the send queue is empty), then briefly for the client to hang up.
    /// </summary>
    internal static void AwaitDelivery(int fd, int waitMs)
    {
        var idle = System.Diagnostics.Stopwatch.StartNew();
        var last = int.MaxValue;
        var pfd = new SocketNative.PollFd { Fd = fd, Events = SocketNative.POLLRDHUP };
        while (SocketNative.ioctl(fd, SocketNative.TIOCOUTQ, out var unsent) == 0 && unsent > 0 && idle.ElapsedMilliseconds < waitMs)
        {
            if (unsent < last)
            {
                last = unsent;
                idle.Restart();
            }
            if (SocketNative.poll(ref pfd, 1, 2) > 0 && (pfd.Revents & (SocketNative.POLLRDHUP | SocketNative.POLLHUP | SocketNative.POLLERR)) != 0)
            {
                return; // the client hung up (or failed): nothing more to protect
            }
        }
        _ = SocketNative.poll(ref pfd, 1, 1000);
    }

    private static string? SendAll(int fd, ReadOnlySpan<byte> data, int waitMs)
    {
        while (!data.IsEmpty)
        {
            var n = SocketNative.send(fd, ref MemoryMarshal.GetReference(data), (nuint)data.Length, SocketNative.MSG_NOSIGNAL | SocketNative.MSG_DONTWAIT);
            if (n > 0)
            {
                data = data[(int)n..];
            }
            else if (Wait(fd, SocketNative.POLLOUT, waitMs) is { } error)
            {
                return error;
            }
        }
        return null;
    }

    private const string ClientClosed = "the client connection closed";

    /// <summary>After a call returned nothing: null to retry once fd is ready (EAGAIN, EINTR), else the failure.</summary>
    private static string? Wait(int fd, short events, int waitMs, int watch = -1)
    {
        var errno = Marshal.GetLastPInvokeError();
        if (errno == SocketNative.EINTR)
        {
            return null;
        }
        if (errno != SocketNative.EAGAIN)
        {
            return $"splice relay I/O failed: errno {errno}";
        }
        // While waiting for the volume, also watch the client: a socket shut down under the pump (its owner
        // is disposing it, and waits for this pump to let go) must end the wait now, not after waitMs.
        Span<SocketNative.PollFd> pfd = [new SocketNative.PollFd { Fd = fd, Events = events }, new SocketNative.PollFd { Fd = watch, Events = 0 }];
        var ready = SocketNative.poll(ref pfd[0], watch < 0 ? 1u : 2u, waitMs);
        if (ready > 0 && (pfd[1].Revents & (SocketNative.POLLHUP | SocketNative.POLLERR)) != 0)
        {
            return ClientClosed;
        }
        return ready > 0 ? null
            : ready == 0 ? $"no progress for {waitMs / 1000} s"
            : Marshal.GetLastPInvokeError() == SocketNative.EINTR ? null : $"poll failed: errno {Marshal.GetLastPInvokeError()}";
    }
}
