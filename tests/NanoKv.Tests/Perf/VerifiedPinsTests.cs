using System.IO.Pipelines;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;
using NanoKv.Volume;

namespace NanoKv.Tests.Perf;

/// <summary>
/// Repeat GETs send verified, mlock'd pages without hashing again; these show the pin only ever stands for
/// bytes that matched and are untouched since: a write in place, a replacement or a deletion ends it.
/// </summary>
public class VerifiedPinsTests
{
    private const int MiB = 1024 * 1024;

    [Fact]
    public void PinnedBytesAreTheFileAndAreFoundAgain()
    {
        var (path, data) = Blob(MiB + 17);
        using var pins = new VerifiedPins(64 * MiB);
        using (var lease = pins.TryPin(path))
        {
            Assert.NotNull(lease);
            Assert.Equal(data, lease.Slice(0, data.Length).ToArray());
            pins.Commit(lease);
        }
        using var again = pins.TryAcquire(path);
        Assert.NotNull(again);
        Assert.True(VerifiedPins.Unchanged(again));
        Assert.Equal(data.Length, pins.Used);
    }

    [Fact]
    public void AnUncommittedPinIsNotFoundAndFreesItsBytes()
    {
        var (path, _) = Blob(MiB);
        using var pins = new VerifiedPins(64 * MiB);
        using (var lease = pins.TryPin(path))
        {
            Assert.NotNull(lease); // e.g. the hash did not match: never committed
        }
        Assert.Null(pins.TryAcquire(path));
        Assert.Equal(0, pins.Used);
    }

    [Fact]
    public void AWriteInPlaceEndsThePinEvenWithTheMtimeRestored()
    {
        var (path, _) = Blob(MiB);
        using var pins = new VerifiedPins(64 * MiB);
        using (var lease = pins.TryPin(path)!)
        {
            pins.Commit(lease);
        }
        var held = pins.TryAcquire(path)!;
        Ops.OpsTests.FlipByte(path); // truncate + rewrite, mtime set back: only ctime tells
        Assert.False(VerifiedPins.Unchanged(held), "a read in flight must notice the change before its last chunk");
        held.Dispose();
        Assert.Null(pins.TryAcquire(path));
        Assert.Equal(0, pins.Used);
    }

    [Fact]
    public void AReplacedFileIsNotServedFromTheOldPin()
    {
        var (path, _) = Blob(MiB);
        using var pins = new VerifiedPins(64 * MiB);
        using (var lease = pins.TryPin(path)!)
        {
            pins.Commit(lease);
        }
        var mtime = File.GetLastWriteTimeUtc(path);
        var other = path + ".new";
        File.WriteAllBytes(other, RandomNumberGenerator.GetBytes(MiB));
        File.SetLastWriteTimeUtc(other, mtime);
        File.Move(other, path, overwrite: true); // same size, same mtime, another inode
        Assert.Null(pins.TryAcquire(path));
    }

    [Fact]
    public void TheBudgetEvictsIdlePinsAndNeverOneInUse()
    {
        var blobs = Enumerable.Range(0, 3).Select(_ => Blob(4 * MiB)).ToList();
        var now = 1_000_000L;
        using var pins = new VerifiedPins((4 * MiB * 2) + MiB, nowMs: () => now, looseBudgetBytes: 0); // evicted = unmapped
        var leases = new List<VerifiedPins.Lease>();
        foreach (var (path, _) in blobs.Take(2))
        {
            var lease = pins.TryPin(path)!;
            pins.Commit(lease);
            leases.Add(lease);
        }
        Assert.Null(pins.TryPin(blobs[2].Path)); // both in use: no room, the read falls back to hashing
        leases[0].Dispose();
        now += (long)VerifiedPins.DefaultKeepRecent.TotalMilliseconds - 1;
        Assert.Null(pins.TryPin(blobs[2].Path)); // idle, but read too recently to be evicted
        now += 1;
        using (var third = pins.TryPin(blobs[2].Path))
        {
            Assert.NotNull(third); // the idle, least recently used pin made room
            pins.Commit(third);
        }
        Assert.Null(pins.TryAcquire(blobs[0].Path));
        using (var second = pins.TryAcquire(blobs[1].Path))
        {
            Assert.NotNull(second);
        }
        leases[1].Dispose();
        Assert.True(pins.Used <= pins.Budget);
    }

    [Fact]
    public void ACyclicReadOverMoreThanTheBudgetKeepsAStableSubsetPinned()
    {
        // Five blobs read in turn, room for two: plain LRU would evict each pin just before its next read (0 hits).
        var blobs = Enumerable.Range(0, 5).Select(_ => Blob(MiB)).ToList();
        var now = 1_000_000L;
        using var pins = new VerifiedPins((2 * MiB) + (MiB / 2), nowMs: () => now, looseBudgetBytes: 0);
        var hits = 0;
        for (var round = 0; round < 4; round++)
        {
            foreach (var (path, _) in blobs)
            {
                now += 100; // a round takes well under the keep-recent time
                using var hit = pins.TryAcquire(path);
                if (hit is not null)
                {
                    hits++;
                    continue;
                }
                using var pin = pins.TryPin(path);
                if (pin is not null)
                {
                    pins.Commit(pin);
                }
            }
        }
        Assert.Equal(2 * 3, hits); // the first two blobs, in each round after the first
        Assert.NotNull(pins.TryAcquire(blobs[0].Path));
        Assert.Null(pins.TryAcquire(blobs[4].Path));
    }

    [Fact]
    public void AnEvictedPinStaysVerifiedUnlockedWhileEveryPageIsPresent()
    {
        using var pins = new VerifiedPins(5 * MiB, looseBudgetBytes: 64 * MiB);
        var blobs = PinInTurn(pins, 2); // the second pin demotes the first (read just now: no longer protected by recency)
        Assert.Equal(4 * MiB, pins.Used);
        Assert.Equal(4 * MiB, pins.LooseUsed);
        Assert.Null(pins.TryAcquire(blobs[0].Path)); // not locked: never for a reader that copies through the mapping
        using (var loose = pins.TryAcquire(blobs[0].Path, allowLoose: true))
        {
            Assert.NotNull(loose);
            Assert.False(loose.Locked);
            Assert.True(VerifiedPins.Intact(loose));
        }
        using (var locked = pins.TryAcquire(blobs[1].Path, allowLoose: true))
        {
            Assert.True(locked!.Locked);
        }
        // A locked pin of the same file takes the loose one's place.
        using (var again = pins.TryPin(blobs[0].Path)!)
        {
            pins.Commit(again);
        }
        Assert.Equal(4 * MiB, pins.Used); // blobs[0] locked, blobs[1] demoted to make room
        Assert.Equal(4 * MiB, pins.LooseUsed);
        using var relocked = pins.TryAcquire(blobs[0].Path);
        Assert.True(relocked!.Locked);
    }

    [Fact]
    public void ALoosePinWhosePagesWereReclaimedIsDroppedAndAReadInFlightSeesIt()
    {
        using var pins = new VerifiedPins(5 * MiB, looseBudgetBytes: 64 * MiB);
        var blobs = PinInTurn(pins, 2);
        var held = pins.TryAcquire(blobs[0].Path, allowLoose: true)!;
        Assert.False(held.Locked);
        PageOut(held.Address, held.Length);
        Assert.False(VerifiedPins.AllPresent(held.Address, held.Length), "MADV_PAGEOUT reclaimed no page: the fault did not fire");
        Assert.False(VerifiedPins.Intact(held), "a read in flight must notice before its last chunk");
        held.Dispose();
        Assert.Null(pins.TryAcquire(blobs[0].Path, allowLoose: true));
        Assert.Equal(0, pins.LooseUsed);
    }

    [Fact]
    public void AMostlyCachedLargeBlobIsPinnedAfterItsDroppedPagesAreReadBackAndAnUncachedOrSmallOneIsNot()
    {
        const int Size = (int)VerifiedPins.FillHolesFrom;
        var (path, data) = Blob(Size);
        // Some pages missing, as the kernel drops scattered pages of recently written files: all dropped, most read back.
        Drop(path, 0, Size);
        ReadBack(path, 0, Size - (3 * MiB));
        var missing = MissingPages(path);
        Assert.InRange(missing, 1, Size / 4 / Environment.SystemPageSize); // the fault fired, and under a quarter
        using var pins = new VerifiedPins(256 * MiB);
        using (var lease = pins.TryPin(path))
        {
            Assert.NotNull(lease);
            Assert.True(lease.Slice(0, data.Length).SequenceEqual(data));
        }
        var (cold, _) = Blob(Size);
        Drop(cold, 0, Size);
        Assert.Equal(Size / Environment.SystemPageSize, MissingPages(cold));
        Assert.Null(pins.TryPin(cold)); // mostly on disk: streamed in windows instead
        var (small, _) = Blob(4 * MiB);
        Drop(small, 0, 4 * MiB);
        ReadBack(small, 0, 3 * MiB);
        Assert.InRange(MissingPages(small), 1, MiB / Environment.SystemPageSize);
        Assert.Null(pins.TryPin(small)); // under FillHolesFrom: not read back, streamed
    }

    [Fact]
    public void EvictedWhileReadKeepsTheMemoryUntilTheReadEnds()
    {
        var (path, data) = Blob(2 * MiB);
        using var pins = new VerifiedPins(64 * MiB);
        using (var lease = pins.TryPin(path)!)
        {
            pins.Commit(lease);
        }
        var held = pins.TryAcquire(path)!;
        pins.Evict(path);
        Assert.Null(pins.TryAcquire(path));
        Assert.Equal(data, held.Slice(0, data.Length).ToArray()); // still mapped for the reader
        held.Dispose();
        Assert.Equal(0, pins.Used);
    }

    [Fact]
    public async Task PinnedSendHoldsTheLastChunkWhenTheFileChanged()
    {
        var (path, data) = Blob((2 * VerifiedSend.ChunkSize) + 5);
        using var pins = new VerifiedPins(64 * MiB);
        using var lease = pins.TryPin(path)!;
        Ops.OpsTests.FlipByte(path);
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var result = await VerifiedSend.SendPinnedAsync(lease, pipe.Writer, null, CancellationToken.None);
        await pipe.Writer.CompleteAsync();
        var sent = (await pipe.Reader.ReadAsync()).Buffer.Length;
        Assert.NotEqual(CopyStatus.Ok, result.Status);
        Assert.Equal(2 * VerifiedSend.ChunkSize, sent);
    }

    /// <summary>
    /// Through a real volume: the second GET is served from the pin; a byte then flipped on disk (mtime kept)
    /// is caught on the next GET like on a first read, the copy quarantined and the reader sent elsewhere.
    /// </summary>
    [Fact]
    public async Task ABlobCorruptedAfterAPinnedReadIsCaughtOnTheNextRead()
    {
        await using var c = await TestCluster.StartAsync(volumes: 0, replicas: 3);
        for (var i = 0; i < 3; i++)
        {
            await c.AddVolumeAsync(); // joined volumes report a corrupt copy to the coordinator
        }
        var data = RandomNumberGenerator.GetBytes(2 * MiB);
        using (var put = await c.Client.PutAsync($"{c.Url}/pinned", new ByteArrayContent(data)))
        {
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        }
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/pinned"));
        int first;
        using (var resp = await c.NoRedirect.GetAsync($"{c.Url}/pinned"))
        {
            var location = resp.Headers.Location!.ToString();
            first = c.Volumes.FindIndex(v => v is not null && location.StartsWith((v.ReadUrl ?? v.Url) + "/", StringComparison.Ordinal));
        }
        var volume = c.Volume(first);
        var path = volume.Store.BlobPath(Encoding.UTF8.GetBytes("pinned"));
        using (var pinned = volume.Pins.TryAcquire(path))
        {
            Assert.NotNull(pinned); // the first GET verified and pinned it
        }
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/pinned"));

        Ops.OpsTests.FlipByte(path);
        var err = await Record.ExceptionAsync(() => c.Client.GetByteArrayAsync($"{c.Url}/pinned"));
        Assert.True(err is HttpRequestException or IOException, $"expected a failed transfer, got {err?.ToString() ?? "the bytes"}");
        Assert.False(File.Exists(path), "the corrupt copy was not quarantined");
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/pinned"));
    }

    private static (string Path, byte[] Data) Blob(int size)
    {
        var dir = TempDir.Create("pins");
        var data = RandomNumberGenerator.GetBytes(size);
        var path = Path.Combine(dir, "blob");
        using (var f = new FileStream(path, FileMode.CreateNew))
        {
            f.Write(data);
            f.Flush(flushToDisk: true); // clean pages: reclaimable at once (PageOut)
        }
        return (path, data);
    }

    /// <summary>Writes count 4 MiB blobs and pins and commits each in turn (each verified read's pin).</summary>
    private static List<(string Path, byte[] Data)> PinInTurn(VerifiedPins pins, int count)
    {
        var blobs = Enumerable.Range(0, count).Select(_ => Blob(4 * MiB)).ToList();
        foreach (var (path, _) in blobs)
        {
            using var lease = pins.TryPin(path)!;
            pins.Commit(lease);
        }
        return blobs;
    }

    /// <summary>Reclaims the pages of a mapping (MADV_PAGEOUT), as memory pressure would.</summary>
    internal static void PageOut(nint addr, long length)
    {
        const int MadvPageout = 21;
        Assert.Equal(0, Madvise(addr, (nuint)length, MadvPageout));
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static extern int Madvise(nint addr, nuint length, int advice);

    /// <summary>Drops [offset, offset+length) of a file from the page cache (POSIX_FADV_DONTNEED).</summary>
    private static void Drop(string path, long offset, long length)
    {
        const int FadvDontNeed = 4;
        using var f = File.OpenHandle(path);
        Assert.Equal(0, Fadvise((int)f.DangerousGetHandle(), offset, length, FadvDontNeed));
    }

    /// <summary>Reads [offset, offset+length) into the page cache without readahead (POSIX_FADV_RANDOM).</summary>
    private static void ReadBack(string path, long offset, int length)
    {
        const int FadvRandom = 1;
        using var f = File.OpenHandle(path);
        Assert.Equal(0, Fadvise((int)f.DangerousGetHandle(), 0, 0, FadvRandom));
        var buffer = new byte[length];
        Assert.Equal(length, RandomAccess.Read(f, buffer, offset));
    }

    /// <summary>Pages of the file not in the page cache (mincore of a fresh mapping).</summary>
    private static int MissingPages(string path)
    {
        using var f = File.OpenHandle(path);
        var length = (nuint)new FileInfo(path).Length;
        var addr = Mmap(0, length, 1, 1, (int)f.DangerousGetHandle(), 0);
        Assert.NotEqual(-1, addr);
        try
        {
            var vec = new byte[((int)length + Environment.SystemPageSize - 1) / Environment.SystemPageSize];
            Assert.Equal(0, Mincore(addr, length, vec));
            return vec.Count(b => (b & 1) == 0);
        }
        finally
        {
            _ = Munmap(addr, length);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "posix_fadvise")]
    private static extern int Fadvise(int fd, long offset, long length, int advice);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static extern nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static extern int Munmap(nint addr, nuint length);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mincore", SetLastError = true)]
    private static extern int Mincore(nint addr, nuint length, byte[] vec);
}
