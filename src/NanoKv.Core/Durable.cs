using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace NanoKv.Core;

/// <summary>Durability helpers: fsync of files and directories, and atomic small-file writes.</summary>
public static partial class Durable
{
    /// <summary>fsyncs a directory so a rename or create inside it survives a power cut.</summary>
    public static void FsyncDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return; // Windows has no directory fsync; NTFS journals metadata.
        }
        var fd = Open(dir, 0 /* O_RDONLY */);
        if (fd < 0)
        {
            throw new IOException($"open({dir}) for fsync failed: errno {Marshal.GetLastPInvokeError()}");
        }
        try
        {
            if (Fsync(fd) != 0)
            {
                throw new IOException($"fsync({dir}) failed: errno {Marshal.GetLastPInvokeError()}");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    /// <summary>
    /// Starts writing a range of a file's dirty pages to disk without waiting (Linux sync_file_range with
    /// SYNC_FILE_RANGE_WRITE). Not a durability point — the fsync at commit is — but it overlaps the disk
    /// writes with receiving the rest of the body, so that fsync has little left to do. Best effort.
    /// </summary>
    public static void StartWriteback(SafeFileHandle handle, long offset, long count)
    {
        if (OperatingSystem.IsLinux())
        {
            _ = SyncFileRange(handle, offset, count, 2 /* SYNC_FILE_RANGE_WRITE */);
        }
    }

    /// <summary>Flushes a file's data and metadata to stable storage.</summary>
    public static void FsyncFile(SafeFileHandle handle) => RandomAccess.FlushToDisk(handle);

    /// <summary>Writes a small file atomically: temp file, fsync, rename, fsync directory.</summary>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> data)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        using (var h = File.OpenHandle(tmp, FileMode.CreateNew, FileAccess.Write))
        {
            RandomAccess.Write(h, data, 0);
            RandomAccess.FlushToDisk(h);
        }
        File.Move(tmp, path, overwrite: true);
        FsyncDirectory(dir);
    }

    /// <summary>Creates a directory chain, fsyncing each parent that gained an entry.</summary>
    public static void CreateDirectory(string dir)
    {
        if (Directory.Exists(dir))
        {
            return;
        }
        var parent = Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(dir));
        if (!string.IsNullOrEmpty(parent))
        {
            CreateDirectory(parent);
        }
        Directory.CreateDirectory(dir);
        if (!string.IsNullOrEmpty(parent))
        {
            FsyncDirectory(parent);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    internal static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    private static partial int SyncFileRange(SafeFileHandle fd, long offset, long nbytes, uint flags);
}

/// <summary>Best-effort extended attributes (Linux): where the filesystem has none, callers fall back.</summary>
public static partial class Xattr
{
    public static bool TrySet(string path, string name, string value)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        var bytes = System.Text.Encoding.UTF8.GetBytes(value);
        return SetXattr(path, name, bytes, (nuint)bytes.Length, 0) == 0;
    }

    public static string? TryGet(string path, string name)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }
        var buf = new byte[256];
        var n = GetXattr(path, name, buf, (nuint)buf.Length);
        return n <= 0 ? null : System.Text.Encoding.UTF8.GetString(buf, 0, (int)n);
    }

    /// <summary>The raw value of an attribute, or null when absent (or the filesystem has none).</summary>
    public static byte[]? TryGetBytes(string path, string name)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }
        var buf = new byte[512];
        while (true)
        {
            var n = GetXattr(path, name, buf, (nuint)buf.Length);
            if (n >= 0)
            {
                return buf.AsSpan(0, (int)n).ToArray();
            }
            if (Marshal.GetLastPInvokeError() != 34 /* ERANGE */ || buf.Length >= 65536)
            {
                return null;
            }
            buf = new byte[buf.Length * 4];
        }
    }

    /// <summary>Sets an attribute or throws (for state that must not be silently dropped).</summary>
    public static void Set(string path, string name, ReadOnlySpan<byte> value)
    {
        var bytes = value.ToArray();
        if (!OperatingSystem.IsLinux() || SetXattr(path, name, bytes, (nuint)bytes.Length, 0) != 0)
        {
            throw new IOException($"setxattr({path}, {name}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    /// <summary>Removes an attribute; true when it is gone (or never was there).</summary>
    public static bool TryRemove(string path, string name) =>
        OperatingSystem.IsLinux() && (RemoveXattr(path, name) == 0 || Marshal.GetLastPInvokeError() == 61 /* ENODATA */);

    /// <summary>True when files in dir can carry user attributes (probed with a scratch file).</summary>
    public static bool Supported(string dir)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        var probe = Path.Combine(dir, ".xattr-probe-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            File.WriteAllBytes(probe, []);
            return TrySet(probe, "user.nanokv.probe", "1") && TryGet(probe, "user.nanokv.probe") == "1";
        }
        finally
        {
            File.Delete(probe);
        }
    }

    [LibraryImport("libc", EntryPoint = "removexattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int RemoveXattr(string path, string name);

    [LibraryImport("libc", EntryPoint = "setxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetXattr(string path, string name, byte[] value, nuint size, int flags);

    [LibraryImport("libc", EntryPoint = "getxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint GetXattr(string path, string name, byte[] value, nuint size);
}
