using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace NanoKv.Volume;

/// <summary>
/// Blobs whose bytes were hashed against their stored BLAKE3 while locked in memory. A blob is mapped and
/// mlock'd before it is hashed, so the kernel cannot evict those page-cache pages: as long as the pin lives,
/// the bytes in memory are exactly the bytes that were verified, and a later full GET sends them without
/// hashing again. Blobs are immutable once committed (replacements get a new file and mtime), which the
/// identity check (length + mtime) relies on. Bounded by a byte budget; least recently used pins are dropped
/// first, never while a read holds them, and never while they were read in the last <see cref="DefaultKeepRecent"/>:
/// a cyclic read over more blobs than the budget holds (a scan, a client reading everything in turn) would
/// otherwise evict each pin just before its next read, so that no read ever hits and every one pays the hash
/// plus an mlock and munmap. Kept recent pins hold a stable subset instead; the other reads hash as without pins.
/// <para>
/// A verified blob that is not (or no longer) locked stays mapped, unlocked, as a <em>loose</em> pin: an evicted
/// pin is unlocked instead of unmapped, and a windowed first read that matched keeps its mapping. Its pages may
/// be reclaimed, but the kernel clears a mapping's page-table entry before it drops a page from the page cache
/// (and again if the file is truncated), so while every page of the mapping is still present (read in
/// /proc/self/pagemap) the page cache holds exactly the pages that were hashed. A read from a loose pin checks
/// that before it starts and again before its last chunk leaves: a page dropped in between (memory pressure)
/// cuts the transfer, and the next read hashes again. Loose pins lock nothing; they cost page tables and a
/// descriptor each, bounded by <see cref="LooseBudget"/> and <see cref="MaxLoosePins"/>.
/// </para>
/// </summary>
public sealed unsafe partial class VerifiedPins : IDisposable
{
    private readonly object _lock = new();
    private readonly Dictionary<string, Pin> _pins = new(StringComparer.Ordinal);
    private readonly LinkedList<Pin> _lru = new();
    private readonly LinkedList<Pin> _loose = new();
    private readonly Func<long> _nowMs;
    private long _used;
    private int _count;
    private long _mapped;
    private int _looseCount;
    private bool _disabled;

    /// <summary>A pin read within this long is not evicted to make room for another.</summary>
    public static readonly TimeSpan DefaultKeepRecent = TimeSpan.FromSeconds(30);

    /// <summary>Pins at most (each keeps its file open, so fds stay bounded).</summary>
    public const int MaxPins = 1024;

    /// <summary>
    /// Blobs from this size on have dropped pages read back so they can be pinned: a pinned first read hashes
    /// beside one send, a windowed one between sends, which a single large stream feels (1 GiB c=1). Below it
    /// the blocking pread costs more than it saves: many concurrent reads already overlap their hashing, and
    /// 16 MiB GETs at c=16 were slower with it (A/B 1672 / 1741 without vs 1603 / 1316 MiB/s with).
    /// </summary>
    public const long FillHolesFrom = 64L * 1024 * 1024;

    /// <summary>Loose pins at most (each keeps its file open and mapped).</summary>
    public const int MaxLoosePins = 2048;

    /// <param name="budgetBytes">Bytes that may be locked at once; 0 turns pins off (loose ones too).</param>
    /// <param name="nowMs">Clock in milliseconds (tests); default Environment.TickCount64.</param>
    /// <param name="looseBudgetBytes">Bytes that loose pins may map; default <see cref="DefaultLooseBudget"/>.</param>
    public VerifiedPins(long budgetBytes, Func<long>? nowMs = null, long? looseBudgetBytes = null)
    {
        Budget = Math.Max(0, budgetBytes);
        LooseBudget = Budget == 0 ? 0 : Math.Max(0, looseBudgetBytes ?? DefaultLooseBudget());
        _nowMs = nowMs ?? (() => Environment.TickCount64);
    }

    /// <summary>Bytes that may be locked at once.</summary>
    public long Budget { get; }

    /// <summary>Bytes that loose (verified, unlocked) pins may keep mapped.</summary>
    public long LooseBudget { get; }

    /// <summary>Bytes mapped by loose pins now.</summary>
    public long LooseUsed
    {
        get
        {
            lock (_lock)
            {
                return _mapped;
            }
        }
    }

    /// <summary>Bytes locked now (including reservations of pins being verified).</summary>
    public long Used
    {
        get
        {
            lock (_lock)
            {
                return _used;
            }
        }
    }

    /// <summary>Why pinning stopped (mlock refused), or null.</summary>
    public string? DisabledReason { get; private set; }

    /// <summary>Default budget: a sixteenth of physical memory, at most 2 GiB.</summary>
    public static long DefaultBudget() => Math.Min(2L << 30, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 16);

    /// <summary>Default loose budget: half of physical memory (the page cache cannot keep more of them anyway).</summary>
    public static long DefaultLooseBudget() => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 2;

    /// <summary>
    /// A verified pin of the file now at path (same inode, untouched since it was pinned: size, mtime and
    /// ctime equal — any write, truncate or utime moves ctime), held until the lease is disposed. allowLoose: a
    /// loose pin may answer too, if every page of its mapping is still present (the caller then sends from the
    /// file, never through the mapping, and checks <see cref="Intact"/> again before the last chunk).
    /// </summary>
    public Lease? TryAcquire(string path, bool allowLoose = false)
    {
        lock (_lock)
        {
            if (!_pins.TryGetValue(path, out var listed) || (!listed.Locked && !allowLoose))
            {
                return null;
            }
        }
        // statx outside the lock: concurrent GETs must not queue behind one another's syscall.
        var ok = Stamp.OfPath(path, out var now);
        Lease lease;
        lock (_lock)
        {
            if (!_pins.TryGetValue(path, out var pin) || (!pin.Locked && !allowLoose))
            {
                return null;
            }
            if (!ok || now != pin.Stamp)
            {
                RemoveLocked(pin); // replaced or modified on disk: this pin no longer stands for the file
                return null;
            }
            pin.Refs++;
            var list = pin.Node.List!;
            list.Remove(pin.Node);
            list.AddLast(pin.Node);
            lease = new Lease(this, pin);
        }
        if (!lease.Pin.Locked && !AllPresent(lease.Pin.Address, lease.Pin.Length))
        {
            // A page was reclaimed since the hash: the cache may now hold bytes read again from disk.
            lease.Dispose();
            Drop(lease.Pin);
            return null;
        }
        return lease;
    }

    /// <summary>True while the pinned inode is untouched since it was pinned (checked before a read's last chunk).</summary>
    public static bool Unchanged(Lease lease) => Stamp.OfHandle(lease.Pin.Handle, out var now) && now == lease.Pin.Stamp;

    /// <summary>
    /// Unchanged, and for a loose pin every page of its mapping still present: the page cache still holds the
    /// pages that were hashed (checked before a read's last chunk).
    /// </summary>
    public static bool Intact(Lease lease) => Unchanged(lease) && (lease.Pin.Locked || AllPresent(lease.Pin.Address, lease.Pin.Length));

    /// <summary>
    /// Keeps the mapping of a blob a windowed read just verified in full (mapped from handle, whose stamp it had
    /// throughout) as a loose pin; false when it is not kept (the caller unmaps it and closes the handle).
    /// </summary>
    public bool Adopt(string path, SafeFileHandle handle, nint addr, Stamp stamp)
    {
        lock (_lock)
        {
            if (_disabled || stamp.Size <= 0 || stamp.Size > LooseBudget || _pins.ContainsKey(path) || !MakeLooseRoomLocked(stamp.Size))
            {
                return false;
            }
            AddLooseLocked(new Pin(path, stamp, handle, addr) { Locked = false, LastUsedMs = _nowMs() });
            return true;
        }
    }

    /// <summary>
    /// Opens, maps and locks a file for verification, within the budget (evicting idle pins), or null when it does
    /// not fit or mlock is refused. The caller hashes the pinned bytes, then calls <see cref="Commit"/> (verified)
    /// or just disposes the lease (not verified: unmapped).
    /// </summary>
    public Lease? TryPin(string path)
    {
        if (Budget == 0)
        {
            return null;
        }
        SafeFileHandle file;
        try
        {
            file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
        if (!Stamp.OfHandle(file, out var stamp) || stamp.Size <= 0 || stamp.Size > Budget)
        {
            file.Dispose();
            return null;
        }
        var length = stamp.Size;
        lock (_lock)
        {
            if (_disabled || !MakeRoomLocked(length))
            {
                file.Dispose();
                return null;
            }
            _used += length; // reserved now so concurrent first reads cannot overshoot the budget
            _count++;
        }
        var addr = Native.mmap(0, (nuint)length, Native.ProtRead, Native.MapShared, (int)file.DangerousGetHandle(), 0);
        if (addr == -1)
        {
            file.Dispose();
            Release(length);
            return null;
        }
        if (!Resident(addr, length) && !(length >= FillHolesFrom && FillHoles(file, addr, length) && Resident(addr, length)))
        {
            // Only pages already in the page cache are pinned: mlock would otherwise read from disk while
            // holding the process's mmap lock, stalling every other thread's page faults behind it. This read
            // hashes as usual (and brings the pages in); a later one pins.
            _ = Native.munmap(addr, (nuint)length);
            file.Dispose();
            Release(length);
            return null;
        }
        if (Native.mlock(addr, (nuint)length) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            _ = Native.munmap(addr, (nuint)length);
            file.Dispose();
            Release(length);
            lock (_lock)
            {
                // EPERM: no CAP_IPC_LOCK and a too small RLIMIT_MEMLOCK; stop trying (every read would pay the syscall).
                _disabled = errno == 1;
                DisabledReason = _disabled ? "mlock refused (EPERM): raise RLIMIT_MEMLOCK (LimitMEMLOCK= in systemd)" : null;
            }
            return null;
        }
        var pin = new Pin(path, stamp, file, addr) { Refs = 1, Locked = true };
        return new Lease(this, pin);
    }

    /// <summary>Makes a verified pin findable; if another reader pinned the same file first, this one is dropped.</summary>
    public void Commit(Lease lease)
    {
        var pin = lease.Pin;
        lock (_lock)
        {
            if (_pins.TryGetValue(pin.Path, out var other))
            {
                if (other.Locked)
                {
                    return; // another reader pinned it first: this one stays unlisted, unmapped when the lease ends
                }
                RemoveLocked(other); // a locked pin stands in for a loose one
            }
            _pins[pin.Path] = pin;
            pin.Node = _lru.AddLast(pin);
            pin.Listed = true;
        }
    }

    /// <summary>Drops this pin if it is still listed (not one that replaced it since).</summary>
    private void Drop(Pin pin)
    {
        lock (_lock)
        {
            if (pin.Listed)
            {
                RemoveLocked(pin);
            }
        }
    }

    /// <summary>Drops the pin of a path (blob deleted, quarantined or replaced).</summary>
    public void Evict(string path)
    {
        lock (_lock)
        {
            if (_pins.TryGetValue(path, out var pin))
            {
                RemoveLocked(pin);
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var pin in _pins.Values.ToList())
            {
                RemoveLocked(pin);
            }
        }
    }

    private static readonly Lazy<SafeFileHandle?> PageMap = new(() =>
    {
        try
        {
            return File.OpenHandle("/proc/self/pagemap", FileMode.Open, FileAccess.Read);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    });

    /// <summary>
    /// True when every page of this process's mapping [addr, addr+length) has a present page-table entry
    /// (/proc/self/pagemap, bit 63; readable without privileges). False when it cannot be read.
    /// </summary>
    public static bool AllPresent(nint addr, long length)
    {
        if (PageMap.Value is not { } map)
        {
            return false;
        }
        var pageSize = Environment.SystemPageSize;
        var pages = (length + pageSize - 1) / pageSize;
        var first = (long)addr / pageSize;
        const int Batch = 8192; // entries per read: 64 KiB, flat for any blob size
        var buffer = System.Buffers.ArrayPool<ulong>.Shared.Rent(Batch);
        try
        {
            for (long done = 0; done < pages;)
            {
                var want = (int)Math.Min(Batch, pages - done);
                var bytes = MemoryMarshal.AsBytes(buffer.AsSpan(0, want));
                if (RandomAccess.Read(map, bytes, (first + done) * sizeof(ulong)) != bytes.Length)
                {
                    return false;
                }
                foreach (var entry in buffer.AsSpan(0, want))
                {
                    if ((entry & (1UL << 63)) == 0)
                    {
                        return false;
                    }
                }
                done += want;
            }
            return true;
        }
        catch (IOException)
        {
            return false;
        }
        finally
        {
            System.Buffers.ArrayPool<ulong>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Reads the pages of a mostly cached file that are not in the page cache (the kernel drops scattered pages of
    /// recently written files) with pread, which holds no mmap lock, so the mlock that follows finds them all;
    /// false when over a quarter is missing (then this read streams it in windows instead).
    /// </summary>
    private static bool FillHoles(SafeFileHandle file, nint addr, long length)
    {
        var pageSize = Environment.SystemPageSize;
        var pages = (int)((length + pageSize - 1) / pageSize);
        var vec = System.Buffers.ArrayPool<byte>.Shared.Rent(pages);
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            var missing = Missing(addr, length, vec);
            if (missing < 0 || (long)missing * 4 > pages)
            {
                return false;
            }
            for (var i = 0; i < pages;)
            {
                if ((vec[i] & 1) != 0)
                {
                    i++;
                    continue;
                }
                var end = i;
                while (end < pages && (vec[end] & 1) == 0 && end - i < buffer.Length / pageSize)
                {
                    end++;
                }
                var offset = (long)i * pageSize;
                var count = (int)Math.Min((long)(end - i) * pageSize, length - offset);
                if (RandomAccess.Read(file, buffer.AsSpan(0, count), offset) <= 0)
                {
                    return false;
                }
                i = end;
            }
            return true;
        }
        catch (IOException)
        {
            return false;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            System.Buffers.ArrayPool<byte>.Shared.Return(vec);
        }
    }

    /// <summary>True when every page of the mapping is in the page cache (mincore).</summary>
    private static bool Resident(nint addr, long length)
    {
        var vec = System.Buffers.ArrayPool<byte>.Shared.Rent((int)((length + Environment.SystemPageSize - 1) / Environment.SystemPageSize));
        try
        {
            return Missing(addr, length, vec) == 0;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(vec);
        }
    }

    /// <summary>Pages of the mapping not in the page cache, their mincore bytes left in vec; -1 when mincore fails.</summary>
    private static int Missing(nint addr, long length, byte[] vec)
    {
        var pages = (int)((length + Environment.SystemPageSize - 1) / Environment.SystemPageSize);
        fixed (byte* v = vec)
        {
            if (Native.mincore(addr, (nuint)length, v) != 0)
            {
                return -1;
            }
        }
        var missing = 0;
        foreach (var b in vec.AsSpan(0, pages))
        {
            missing += ~b & 1;
        }
        return missing;
    }

    private bool MakeRoomLocked(long length)
    {
        var node = _lru.First;
        var idleSince = _nowMs() - (long)DefaultKeepRecent.TotalMilliseconds;
        while ((_used + length > Budget || _count >= MaxPins) && node is not null)
        {
            var next = node.Next;
            // Demoted into the loose tier a pin stays verified, so recency only protects pins that would be unmapped.
            if (node.Value.Refs == 0 && (node.Value.LastUsedMs <= idleSince || node.Value.Length <= LooseBudget))
            {
                DemoteLocked(node.Value);
            }
            node = next;
        }
        return _used + length <= Budget && _count < MaxPins;
    }

    /// <summary>An idle locked pin leaves the budget: unlocked and kept as a loose pin, or unmapped if none fits.</summary>
    private void DemoteLocked(Pin pin)
    {
        if (pin.Length > LooseBudget || !MakeLooseRoomLocked(pin.Length))
        {
            RemoveLocked(pin);
            return;
        }
        _lru.Remove(pin.Node);
        _ = Native.munlock(pin.Address, (nuint)pin.Length);
        pin.Locked = false;
        _used -= pin.Length;
        _count--;
        AddLooseLocked(pin);
    }

    /// <summary>Lists an unlocked, verified mapping as a loose pin (room was made).</summary>
    private void AddLooseLocked(Pin pin)
    {
        _mapped += pin.Length;
        _looseCount++;
        _pins[pin.Path] = pin;
        pin.Node = _loose.AddLast(pin);
        pin.Listed = true;
    }

    private bool MakeLooseRoomLocked(long length)
    {
        var node = _loose.First;
        while ((_mapped + length > LooseBudget || _looseCount >= MaxLoosePins) && node is not null)
        {
            var next = node.Next;
            if (node.Value.Refs == 0)
            {
                RemoveLocked(node.Value);
            }
            node = next;
        }
        return _mapped + length <= LooseBudget && _looseCount < MaxLoosePins;
    }

    private void RemoveLocked(Pin pin)
    {
        if (pin.Listed)
        {
            _pins.Remove(pin.Path);
            pin.Node.List!.Remove(pin.Node);
            pin.Listed = false;
        }
        if (pin.Refs == 0)
        {
            UnmapLocked(pin);
        }
    }

    private void UnmapLocked(Pin pin)
    {
        if (pin.Address != 0)
        {
            _ = Native.munmap(pin.Address, (nuint)pin.Length); // also unlocks the pages
            pin.Handle.Dispose();
            pin.Address = 0;
            if (pin.Locked)
            {
                _used -= pin.Length;
                _count--;
            }
            else
            {
                _mapped -= pin.Length;
                _looseCount--;
            }
        }
    }

    private void Release(long length)
    {
        lock (_lock)
        {
            _used -= length;
            _count--;
        }
    }

    private void Return(Pin pin)
    {
        lock (_lock)
        {
            pin.Refs--;
            pin.LastUsedMs = _nowMs(); // idle from the end of its last read (a pin in use is never evicted)
            if (pin.Refs == 0 && !pin.Listed)
            {
                UnmapLocked(pin); // evicted, never committed, or a duplicate: nobody can find it again
            }
        }
    }

    /// <summary>A hold on a pinned blob: its memory stays mapped until disposed.</summary>
    public sealed class Lease(VerifiedPins owner, Pin pin) : IDisposable
    {
        private int _disposed;

        internal Pin Pin => pin;

        public nint Address => pin.Address;

        public long Length => pin.Length;

        /// <summary>The file the pin was taken from (statx of it tells whether it changed).</summary>
        internal SafeFileHandle Handle => pin.Handle;

        /// <summary>Locked in memory; false for a loose pin (send from the file only, and check <see cref="Intact"/>).</summary>
        public bool Locked => pin.Locked;

        /// <summary>The pinned bytes [offset, offset+count).</summary>
        public ReadOnlySpan<byte> Slice(long offset, int count) => new((void*)(pin.Address + (nint)offset), count);

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                owner.Return(pin);
            }
        }
    }

    public sealed class Pin(string path, Stamp stamp, SafeFileHandle handle, nint address)
    {
        public string Path { get; } = path;
        public Stamp Stamp { get; } = stamp;
        public long Length => Stamp.Size;
        internal SafeFileHandle Handle { get; } = handle;
        internal nint Address { get; set; } = address;
        internal int Refs { get; set; }
        internal long LastUsedMs { get; set; }
        internal bool Listed { get; set; }
        internal bool Locked { get; set; }
        internal LinkedListNode<Pin> Node { get; set; } = null!;
    }

    /// <summary>What identifies an unchanged file: inode, size, mtime and ctime (which no user can set back).</summary>
    public readonly record struct Stamp(ulong Inode, long Size, long MtimeNs, long CtimeNs)
    {
        private const int AtFdCwd = -100;
        private const int AtEmptyPath = 0x1000;
        private const uint BasicStats = 0x7ff;

        public static bool OfPath(string path, out Stamp stamp) => From(Native.statx(AtFdCwd, path, 0, BasicStats, out var buf), buf, out stamp);

        public static bool OfHandle(SafeFileHandle file, out Stamp stamp) =>
            From(Native.statx((int)file.DangerousGetHandle(), "", AtEmptyPath, BasicStats, out var buf), buf, out stamp);

        private static bool From(int rc, Native.StatxBuf buf, out Stamp stamp)
        {
            stamp = rc == 0
                ? new Stamp(buf.Ino, (long)buf.Size, (buf.MtimeSec * 1_000_000_000) + buf.MtimeNsec, (buf.CtimeSec * 1_000_000_000) + buf.CtimeNsec)
                : default;
            return rc == 0;
        }
    }

    internal static partial class Native
    {
        public const int ProtRead = 1;
        public const int MapShared = 1;
        public const int MapPopulate = 0x8000;
        public const int MadvWillNeed = 3;

        [LibraryImport("libc", SetLastError = true)]
        public static partial int munlock(nint addr, nuint length);

        [LibraryImport("libc", SetLastError = true)]
        public static partial int madvise(nint addr, nuint length, int advice);

        [LibraryImport("libc", SetLastError = true)]
        public static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

        [LibraryImport("libc", SetLastError = true)]
        public static partial int mlock(nint addr, nuint length);

        [LibraryImport("libc", SetLastError = true)]
        public static partial int munmap(nint addr, nuint length);

        [LibraryImport("libc", SetLastError = true)]
        public static partial int mincore(nint addr, nuint length, byte* vec);

        [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        public static partial int statx(int dirfd, string path, int flags, uint mask, out StatxBuf buf);

        /// <summary>struct statx (linux/stat.h), the fields read here at their fixed offsets; 256 bytes.</summary>
        [StructLayout(LayoutKind.Explicit, Size = 256)]
        public struct StatxBuf
        {
            [FieldOffset(32)] public ulong Ino;
            [FieldOffset(40)] public ulong Size;
            [FieldOffset(96)] public long CtimeSec;
            [FieldOffset(104)] public uint CtimeNsec;
            [FieldOffset(112)] public long MtimeSec;
            [FieldOffset(120)] public uint MtimeNsec;
        }
    }
}
