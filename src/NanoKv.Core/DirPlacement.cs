using System.Runtime.InteropServices;

namespace NanoKv.Core;

/// <summary>
/// Where ext4 puts the folders new files are created in. New inodes go to the parent folder's block group,
/// and on a filesystem without a journal the allocator skips, one by one, every inode deleted in the last
/// minutes (find_inode_bit/recently_deleted): after another program removed thousands of files near our
/// folders, each create scanned them all (a fifth of a volume's CPU in 1 MiB PUTs). The Orlov "top
/// directory" hint (chattr +T) on the data root, and a fresh random name for tmp/ (renamed into place),
/// put tmp/ and the blob fan-out into uncongested groups. Best effort: other filesystems ignore it.
/// </summary>
public static partial class DirPlacement
{
    private const uint TopDirFlag = 0x00020000; // FS_TOPDIR_FL
    private const ulong GetFlags = 0x80086601; // FS_IOC_GETFLAGS
    private const ulong SetFlags = 0x40086602; // FS_IOC_SETFLAGS

    /// <summary>Marks dir as the top of independent subtrees (its subfolders spread over the disk).</summary>
    public static void MarkTopDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        var fd = Durable.Open(dir, 0x10000 /* O_RDONLY|O_DIRECTORY */);
        if (fd < 0)
        {
            return;
        }
        try
        {
            uint flags = 0;
            if (Ioctl(fd, GetFlags, ref flags) == 0 && (flags & TopDirFlag) == 0)
            {
                flags |= TopDirFlag;
                _ = Ioctl(fd, SetFlags, ref flags);
            }
        }
        finally
        {
            _ = Durable.Close(fd);
        }
    }

    /// <summary>
    /// Creates dir (a child of a top directory) under a random name first and renames it into place, so the
    /// allocator's name hash picks a fresh group; an existing non-empty dir is kept as is.
    /// </summary>
    public static void CreateSpread(string dir)
    {
        if (Directory.Exists(dir) && Directory.EnumerateFileSystemEntries(dir).Any())
        {
            return;
        }
        var parent = Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(dir))!;
        var fresh = Path.Combine(parent, "." + Path.GetFileName(dir) + "-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(fresh);
        if (Directory.Exists(dir))
        {
            Directory.Delete(dir); // empty: replaced by the freshly placed one
        }
        Directory.Move(fresh, dir);
        Durable.FsyncDirectory(parent);
    }

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int Ioctl(int fd, ulong request, ref uint flags);
}
