using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using static NanoKv.Core.SocketNative;

namespace NanoKv.Core;

/// <summary>What a coordinator hands a volume on the same host: the client's socket and what to send into it.</summary>
/// <param name="Key">The blob's key (internal form).</param>
/// <param name="Version">The committed version the coordinator looked up.</param>
/// <param name="Etag">The committed BLAKE3.</param>
/// <param name="Size">The committed size.</param>
/// <param name="Head">The client's status line and headers, to go out before the body.</param>
public sealed record HandoffRequest(byte[] Key, long Version, string Etag, long Size, byte[] Head);

/// <summary>
/// A full read served by a replica on the coordinator's own host without a byte through the coordinator: the
/// coordinator passes the client's connection (SCM_RIGHTS over the volume's unix socket) together with the
/// response head; the volume sends head and body from its verified, pinned pages with sendfile, as its read
/// port does for a native GET, and answers how it ended. A relay, even spliced, pushes every byte through a
/// second loopback TCP connection: measured, the coordinator then spent more CPU per byte than the volumes.
/// The volume checks the version, etag and size before the first byte; anything it cannot serve that way it
/// declines before touching the client's socket, and the coordinator relays instead. Linux only;
/// NANOKV_HANDOFF=0 turns it off (for measurement).
/// </summary>
public static partial class SocketHandoff
{
    /// <summary>A request's fixed part (key, numbers, secret) fits in this; the head is bounded by the raw response.</summary>
    public const int MaxMessage = 64 * 1024;

    /// <summary>Blobs below this are relayed: a handoff costs two threads and a unix-socket round trip, a relay of a
    /// small body little. From here the relay's two loopback copies cost more (measured at 1 MiB: the coordinator
    /// spent 0.8 ms of CPU per relayed GET, mostly the kernel copying the body in and out again).</summary>
    public const long MinBytes = 1 << 20;

    private const string Magic = "NKH1";
    private static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(60);

    // Each handoff holds a thread of the coordinator while the volume sends; past the bound reads relay.
    private static readonly SemaphoreSlim Slots = new(64);

    public static bool Enabled { get; } = OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable("NANOKV_HANDOFF") != "0";

    /// <summary>
    /// Hands client to the volume listening at socketPath. NotStarted when the volume declined, was unreachable,
    /// or the head cannot be sent raw: nothing reached the client then.
    /// </summary>
    public static async Task<(RelayOutcome Outcome, string? Error)> HandOffAsync(
        string socketPath, string? secret, byte[] key, long version, string etag, long size, IRawResponse client)
    {
        if (!Enabled || !Slots.Wait(0))
        {
            return (RelayOutcome.NotStarted, "handoff unavailable");
        }
        try
        {
            if (client.Head(size) is not { } head)
            {
                return (RelayOutcome.NotStarted, "response head not sendable raw");
            }
            var message = Encode(secret, new HandoffRequest(key, version, etag, size, head));
            if (message.Length > MaxMessage)
            {
                return (RelayOutcome.NotStarted, "handoff request too large");
            }
            // The volume gets its own descriptor of the connection; the coordinator's stays open (and its number
            // ours) until the volume answered, and when the connection closes after, until the last byte was acknowledged.
            return await SpliceRelay.HoldingClientAsync(client, down => Run(socketPath, message, down, client.KeepAlive));
        }
        finally
        {
            Slots.Release();
        }
    }

    private static (RelayOutcome, string?) Run(string socketPath, byte[] message, int down, bool keepAlive)
    {
        using var channel = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        try
        {
            channel.Connect(new UnixDomainSocketEndPoint(socketPath)); // local: immediate or refused
        }
        catch (SocketException ex)
        {
            return (RelayOutcome.NotStarted, $"volume handoff socket {socketPath}: {ex.SocketErrorCode}");
        }
        var fd = (int)channel.Handle;
        if (Send(fd, message, down) is { } sendError)
        {
            return (RelayOutcome.NotStarted, sendError);
        }
        // The volume answers when it is done and bounds its own stalls (a client gone or not reading), so this
        // waits as long as it makes progress; the request's cancellation changes nothing, the volume owns the
        // send. A volume that dies mid-send hangs up: the client's transfer may be cut.
        // A volume that stops (SIGSTOP, a hung disk) neither answers nor hangs up: once the client's connection has
        // not moved for IdleTimeout, the response is cut.
        var reply = new byte[1024];
        var idle = System.Diagnostics.Stopwatch.StartNew();
        var lastUnsent = -1;
        while (true)
        {
            var pfd = new PollFd { Fd = fd, Events = POLLIN };
            var ready = poll(ref pfd, 1, 1000);
            if (ready < 0 && Marshal.GetLastPInvokeError() != EINTR)
            {
                return (RelayOutcome.SourceCut, "handoff: poll failed");
            }
            if (ready > 0)
            {
                break; // an answer, or a hang-up
            }
            if (ioctl(down, TIOCOUTQ, out var unsent) == 0 && unsent != lastUnsent)
            {
                lastUnsent = unsent;
                idle.Restart();
            }
            else if (idle.Elapsed > IdleTimeout)
            {
                return (RelayOutcome.SourceCut, $"the volume made no progress for {IdleTimeout.TotalSeconds:0} s");
            }
        }
        var n = recv(fd, ref reply[0], (nuint)reply.Length, MSG_DONTWAIT);
        if (n <= 0)
        {
            return (RelayOutcome.SourceCut, "the volume hung up during the handoff");
        }
        var outcome = (RelayOutcome)reply[0];
        var text = n > 1 ? Encoding.UTF8.GetString(reply, 1, (int)n - 1) : null;
        if (outcome == RelayOutcome.Sent && !keepAlive)
        {
            _ = shutdown(down, SHUT_WR); // the body is complete: FIN after it
            SpliceRelay.AwaitDelivery(down, (int)IdleTimeout.TotalMilliseconds);
        }
        return outcome is RelayOutcome.NotStarted or RelayOutcome.Sent or RelayOutcome.SourceCut or RelayOutcome.ClientGone or RelayOutcome.Corrupt
            ? (outcome, text)
            : (RelayOutcome.SourceCut, $"unknown handoff answer {reply[0]}");
    }

    /// <summary>The request's wire form: magic, secret, key, version, etag and size on lines, then the head.</summary>
    public static byte[] Encode(string? secret, HandoffRequest r)
    {
        var fixedPart = Encoding.UTF8.GetBytes(string.Join('\n',
            Magic, secret ?? "", KeyCodec.Encode(r.Key), r.Version.ToString(CultureInfo.InvariantCulture), r.Etag,
            r.Size.ToString(CultureInfo.InvariantCulture), ""));
        return [.. fixedPart, .. r.Head];
    }

    /// <summary>Parses a request; null when malformed. secret: what the sender presented ("" for none).</summary>
    public static HandoffRequest? Decode(ReadOnlySpan<byte> message, out string secret)
    {
        secret = "";
        var fields = new string[6];
        var at = 0;
        for (var i = 0; i < fields.Length; i++)
        {
            var nl = message[at..].IndexOf((byte)'\n');
            if (nl < 0)
            {
                return null;
            }
            fields[i] = Encoding.UTF8.GetString(message.Slice(at, nl));
            at += nl + 1;
        }
        if (fields[0] != Magic || !KeyCodec.TryDecode(fields[2], out var key, out _, KeyCodec.MaxInternalKeyBytes)
            || !long.TryParse(fields[3], NumberStyles.None, CultureInfo.InvariantCulture, out var version)
            || !long.TryParse(fields[5], NumberStyles.None, CultureInfo.InvariantCulture, out var size)
            || fields[4].Length == 0 || at == message.Length)
        {
            return null;
        }
        secret = fields[1];
        return new HandoffRequest(key, version, fields[4], size, message[at..].ToArray());
    }

    /// <summary>
    /// Receives one request and the descriptor passed with it (-1 when none came). Returns the bytes received
    /// (0: the peer hung up), or -1 with errno set.
    /// </summary>
    public static unsafe int Receive(int channel, byte[] buffer, out int passedFd)
    {
        passedFd = -1;
        var control = stackalloc byte[ControlBytes];
        fixed (byte* data = buffer)
        {
            var iov = new IoVec { Base = data, Length = (nuint)buffer.Length };
            var msg = new MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = ControlBytes };
            var n = recvmsg(channel, ref msg, MSG_CMSG_CLOEXEC);
            if (n < 0)
            {
                return -1;
            }
            var header = (CmsgHdr*)control;
            if (msg.ControlLen >= (nuint)sizeof(CmsgHdr) + sizeof(int) && header->Level == SOL_SOCKET && header->Type == SCM_RIGHTS)
            {
                passedFd = *(int*)(control + sizeof(CmsgHdr));
            }
            if ((msg.Flags & (MSG_TRUNC | MSG_CTRUNC)) != 0)
            {
                if (passedFd >= 0)
                {
                    _ = close(passedFd);
                    passedFd = -1;
                }
                Marshal.SetLastPInvokeError(EMSGSIZE);
                return -1;
            }
            return (int)n;
        }
    }

    /// <summary>Answers a request: how it ended, and why.</summary>
    public static void Reply(int channel, RelayOutcome outcome, string? why)
    {
        byte[] reply = [(byte)outcome, .. Encoding.UTF8.GetBytes(why is { Length: > 900 } ? why[..900] : why ?? "")];
        _ = send(channel, ref reply[0], (nuint)reply.Length, MSG_NOSIGNAL | MSG_DONTWAIT);
    }

    private static unsafe string? Send(int channel, byte[] message, int passFd)
    {
        var control = stackalloc byte[ControlBytes];
        var header = (CmsgHdr*)control;
        header->Len = (nuint)(sizeof(CmsgHdr) + sizeof(int));
        header->Level = SOL_SOCKET;
        header->Type = SCM_RIGHTS;
        *(int*)(control + sizeof(CmsgHdr)) = passFd;
        fixed (byte* data = message)
        {
            var iov = new IoVec { Base = data, Length = (nuint)message.Length };
            var msg = new MsgHdr { Iov = &iov, IovLen = 1, Control = control, ControlLen = ControlBytes };
            var n = sendmsg(channel, ref msg, MSG_NOSIGNAL);
            return n == message.Length ? null : $"handoff: sendmsg failed: errno {Marshal.GetLastPInvokeError()}";
        }
    }

    // CMSG_SPACE(sizeof(int)) on 64-bit Linux: a 16-byte header, the int, padding to 8.
    private const int ControlBytes = 24;
    private const int SOL_SOCKET = 1;
    private const int SCM_RIGHTS = 1;
    private const int MSG_TRUNC = 0x20;
    private const int MSG_CTRUNC = 0x8;
    private const int MSG_CMSG_CLOEXEC = 0x40000000;
    private const int EMSGSIZE = 90;

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct MsgHdr
    {
        public void* Name;
        public uint NameLen;
        public IoVec* Iov;
        public nuint IovLen;
        public void* Control;
        public nuint ControlLen;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct CmsgHdr
    {
        public nuint Len;
        public int Level;
        public int Type;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint sendmsg(int fd, ref MsgHdr msg, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint recvmsg(int fd, ref MsgHdr msg, int flags);
}
