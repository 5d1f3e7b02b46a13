using System.Runtime.InteropServices;

namespace NanoKv.Core;

/// <summary>The Linux socket calls the raw data paths (splice relay, read handoff, the volume's handoff sends) share.</summary>
public static partial class SocketNative
{
    public const int O_NONBLOCK = 0x800;
    public const int O_CLOEXEC = 0x80000;
    public const int F_SETPIPE_SZ = 1031;
    public const uint SPLICE_F_MOVE = 1;
    public const uint SPLICE_F_NONBLOCK = 2;
    public const uint SPLICE_F_MORE = 4;
    public const int MSG_NOSIGNAL = 0x4000;
    public const int MSG_DONTWAIT = 0x40;
    public const int SHUT_RDWR = 2;
    public const int SHUT_WR = 1;
    public const short POLLIN = 1;
    public const short POLLOUT = 4;
    public const short POLLERR = 8;
    public const short POLLHUP = 0x10;
    public const short POLLRDHUP = 0x2000;
    public const int TIOCOUTQ = 0x5411;
    public const int EINTR = 4;
    public const int EAGAIN = 11;

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", SetLastError = true)]
    public static partial int pipe2(ref int fds, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fcntl(int fd, int cmd, int arg);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint splice(int fdIn, IntPtr offIn, int fdOut, IntPtr offOut, nuint len, uint flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint recv(int fd, ref byte buf, nuint len, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint send(int fd, ref byte buf, nuint len, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int poll(ref PollFd fds, nuint nfds, int timeout);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int shutdown(int fd, int how);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int ioctl(int fd, int request, out int value);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);

    public const int IPPROTO_TCP = 6;
    public const int TCP_CORK = 3;

    /// <summary>Sets or clears TCP_CORK (full segments only while set); false when it could not.</summary>
    public static bool Cork(int fd, bool on)
    {
        var value = on ? 1 : 0;
        return setsockopt(fd, IPPROTO_TCP, TCP_CORK, ref value, sizeof(int)) == 0;
    }

    /// <summary>
    /// After a call on a non-blocking fd returned nothing: null to retry once fd is ready for events (EAGAIN,
    /// EINTR), else the failure (another errno, waitMs without readiness, a failed poll).
    /// </summary>
    public static string? WaitReady(int fd, short events, int waitMs)
    {
        var errno = Marshal.GetLastPInvokeError();
        if (errno == EINTR)
        {
            return null;
        }
        if (errno != EAGAIN)
        {
            return $"socket I/O failed: errno {errno}";
        }
        var pfd = new PollFd { Fd = fd, Events = events };
        var ready = poll(ref pfd, 1, waitMs);
        return ready > 0 ? null
            : ready == 0 ? $"no progress for {waitMs / 1000} s"
            : Marshal.GetLastPInvokeError() == EINTR ? null : $"poll failed: errno {Marshal.GetLastPInvokeError()}";
    }

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint sendfile(int outFd, int inFd, ref long offset, nuint count);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int setsockopt(int fd, int level, int name, ref int value, int length);
}
