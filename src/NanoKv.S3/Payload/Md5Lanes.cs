using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace NanoKv.S3.Payload;

/// <summary>
/// MD5 of many bodies at once, sixteen in the lanes of AVX-512 registers. MD5 (the S3 ETag) cannot be split
/// within one body, and one body's MD5 is a chain of dependent steps: ~1.7–2 CPU-s per GiB here, a quarter of
/// an S3 PUT's whole cost, and what kept S3 PUTs behind native ones. Concurrent uploads are independent
/// chains, so one thread steps up to sixteen of them together for about the price of one. Each body queues
/// buffers (the pump's own chunks, or staging copies) on its chain; the lanes thread takes chains into free
/// lanes, steps all lanes block by block, and completes each buffer's job when its blocks are done. A pass
/// costs the same for one lane as for sixteen, so the thread waits for company while no body awaits a job.
/// On with AVX-512 unless NANOKV_MD5_LANES=0 (then every body uses the runtime's MD5). They were opt-in for one stop
/// after a multipart test hung; that hang was a striped metadata lock taken twice (<c>KeyLocks</c>), not the lanes.
/// </summary>
public static unsafe class Md5Lanes
{
    internal const int Width = 16;

    /// <summary>Staging buffer size: a multiple of 64 (one MD5 block).</summary>
    public const int BufferSize = 256 * 1024;

    /// <summary>A body uses the lanes when at least this many are open (itself included); fewer are hashed one by one inline.</summary>
    public const int MinBodies = 4;

    // Lanes busy enough to step without waiting for more; and how long a job not awaited by anyone may wait.
    private const int BatchLanes = 12;
    private static readonly TimeSpan MaxDelay = TimeSpan.FromMilliseconds(50);

    // Blocks stepped per pass before free lanes are refilled, so a newly queued buffer waits little.
    private const int MaxBlocksPerPass = 64;

    private static readonly ConcurrentQueue<Chain> Queue = new();
    // Wakes the lanes thread (new work, or a hurry). Not a SemaphoreSlim: its waits spin first, and the lanes thread,
    // which waits for company many times a second, spent most of its time in sched_yield (10,000 a second, measured).
    private static readonly ManualResetEventSlim Work = new(false, spinCount: 0);
    private static readonly ConcurrentQueue<byte[]> Buffers = new();
    private static int _started;

    public static bool Supported { get; } = Avx512F.IsSupported && Environment.GetEnvironmentVariable("NANOKV_MD5_LANES") != "0";

    /// <summary>
    /// One body's MD5: its state and its queued jobs, stepped in order in one lane. A body may queue several
    /// buffers at once (its chunks often arrive together); the lane goes on to the next without giving it up.
    /// </summary>
    internal sealed class Chain(uint[] state)
    {
        private int _urgent;

        /// <summary>The digest state between jobs (the lanes thread writes it back when a job is done).</summary>
        public uint[] State { get; } = state;

        /// <summary>Jobs not yet in a lane (lock the chain).</summary>
        public Queue<Job> Pending { get; } = new();

        /// <summary>Queued or in a lane (lock the chain).</summary>
        public bool Scheduled { get; set; }

        /// <summary>Someone awaits one of its jobs: the lanes must not wait for company.</summary>
        public bool Urgent => Volatile.Read(ref _urgent) != 0;

        public void MarkUrgent() => Volatile.Write(ref _urgent, 1);

        public void ClearUrgent() => Volatile.Write(ref _urgent, 0);
    }

    internal sealed class Job(byte[] buffer, int blocks)
    {
        public byte[] Buffer { get; } = buffer;

        public int Blocks { get; } = blocks;

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public long SubmittedAt { get; } = Stopwatch.GetTimestamp();
    }

    internal static byte[] RentBuffer() => Buffers.TryDequeue(out var b) ? b : GC.AllocateUninitializedArray<byte>(BufferSize, pinned: true);

    internal static void ReturnBuffer(byte[] buffer)
    {
        if (Buffers.Count < 256)
        {
            Buffers.Enqueue(buffer);
        }
    }

    /// <summary>Queues blocks 64-byte blocks of buffer behind chain's earlier jobs; the job's Done completes when they are stepped in.</summary>
    internal static Job Submit(Chain chain, byte[] buffer, int blocks)
    {
        if (Interlocked.Exchange(ref _started, 1) == 0)
        {
            new Thread(Run) { IsBackground = true, Name = "md5-lanes" }.Start();
        }
        var job = new Job(buffer, blocks);
        lock (chain)
        {
            chain.Pending.Enqueue(job);
            if (!chain.Scheduled)
            {
                chain.Scheduled = true;
                Queue.Enqueue(chain);
            }
        }
        Work.Set();
        return job;
    }

    /// <summary>Lets a chain's jobs go without waiting for more lanes to fill (its body waits for them).</summary>
    internal static void Hurry(Chain chain)
    {
        if (!chain.Urgent)
        {
            chain.MarkUrgent();
            Work.Set();
        }
    }

    /// <summary>
    /// How long the lanes may still wait for company before the next pass: zero when enough lanes are busy, a
    /// body awaits its digest or its next buffer's turn, or the oldest job has waited <see cref="MaxDelay"/>. A
    /// pass costs the same for one lane as for sixteen; 1 MiB PUTs ran ~3 lanes a pass (1.2 ms of lanes CPU per MiB).
    /// </summary>
    private static int WaitForCompany(Chain?[] chains, Job?[] jobs, int active)
    {
        if (active >= BatchLanes)
        {
            return 0;
        }
        var oldest = long.MaxValue;
        for (var l = 0; l < Width; l++)
        {
            if (chains[l] is not { } c)
            {
                continue;
            }
            if (c.Urgent)
            {
                return 0;
            }
            oldest = Math.Min(oldest, jobs[l]!.SubmittedAt);
        }
        var left = MaxDelay - Stopwatch.GetElapsedTime(oldest);
        return left <= TimeSpan.Zero ? 0 : (int)Math.Ceiling(left.TotalMilliseconds);
    }

    private static void Run()
    {
        var chains = new Chain?[Width];
        var jobs = new Job?[Width];
        var done = new int[Width];
        var state = (uint*)NativeMemory.AlignedAlloc(4 * Width * sizeof(uint), 64);
        var pointers = (byte**)NativeMemory.Alloc(Width, (nuint)sizeof(byte*));
        var idle = (byte*)NativeMemory.AllocZeroed(MaxBlocksPerPass * 64);
        var handles = new GCHandle[Width];
        void Start(int l, Job job)
        {
            jobs[l] = job;
            done[l] = 0;
            handles[l] = GCHandle.Alloc(job.Buffer, GCHandleType.Pinned);
        }
        while (true)
        {
            // Reset before looking at the queue and the urgency: a Set after this (new work, a hurry) ends the next wait.
            Work.Reset();
            var active = 0;
            var blocks = MaxBlocksPerPass;
            for (var l = 0; l < Width; l++)
            {
                if (chains[l] is null && Queue.TryDequeue(out var chain))
                {
                    Job first;
                    lock (chain)
                    {
                        first = chain.Pending.Dequeue(); // a scheduled chain has a pending job
                    }
                    chains[l] = chain;
                    Start(l, first);
                    for (var w = 0; w < 4; w++)
                    {
                        state[w * Width + l] = chain.State[w];
                    }
                }
                if (jobs[l] is { } j)
                {
                    active++;
                    blocks = Math.Min(blocks, j.Blocks - done[l]);
                    pointers[l] = (byte*)handles[l].AddrOfPinnedObject() + (done[l] * 64L);
                }
                else
                {
                    pointers[l] = idle;
                }
            }
            if (active == 0)
            {
                Work.Wait();
                continue;
            }
            if (WaitForCompany(chains, jobs, active) is var ms and > 0)
            {
                _ = Work.Wait(ms); // a new job or a hurry wakes it
                continue;
            }
            if (blocks > 0)
            {
                Compress(state, pointers, blocks);
            }
            for (var l = 0; l < Width; l++)
            {
                if (jobs[l] is not { } j)
                {
                    continue;
                }
                done[l] += blocks;
                if (done[l] < j.Blocks)
                {
                    continue;
                }
                var c = chains[l]!;
                for (var w = 0; w < 4; w++)
                {
                    c.State[w] = state[w * Width + l]; // before Done: the digest is read right after
                }
                handles[l].Free();
                j.Done.SetResult();
                Job? next;
                lock (c)
                {
                    if (!c.Pending.TryDequeue(out next))
                    {
                        c.Scheduled = false;
                        c.ClearUrgent();
                    }
                }
                if (next is not null)
                {
                    Start(l, next); // the same body goes on in its lane, from the state there
                }
                else
                {
                    (chains[l], jobs[l]) = (null, null);
                }
            }
        }
    }

    /// <summary>Steps count blocks of each lane's data (pointers[l], contiguous) into the lanes' states (a, b, c, d rows of 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Compress(uint* state, byte** pointers, int count)
    {
        var a = Vector512.Load(state);
        var b = Vector512.Load(state + Width);
        var c = Vector512.Load(state + (2 * Width));
        var d = Vector512.Load(state + (3 * Width));
        // Interleave indices for the transpose: (x0, y0, x1, y1, ...) from the low or the high halves.
        var zipLow = Vector512.Create(0u, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        var zipHigh = Vector512.Create(8u, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        var r = stackalloc Vector512<uint>[Width];
        var t = stackalloc Vector512<uint>[Width];
        for (var block = 0; block < count; block++)
        {
            // Transpose the 16 lanes' blocks (rows) into 16 words (columns): four rounds of pairwise interleaving.
            for (var l = 0; l < Width; l++)
            {
                r[l] = Vector512.Load((uint*)(pointers[l] + (block * 64L)));
            }
            for (var round = 0; round < 4; round++)
            {
                for (var i = 0; i < Width / 2; i++)
                {
                    t[2 * i] = Avx512F.PermuteVar16x32x2(r[i], zipLow, r[i + (Width / 2)]);
                    t[(2 * i) + 1] = Avx512F.PermuteVar16x32x2(r[i], zipHigh, r[i + (Width / 2)]);
                }
                var swap = r;
                r = t;
                t = swap;
            }
            var m0 = r[0];
            var m1 = r[1];
            var m2 = r[2];
            var m3 = r[3];
            var m4 = r[4];
            var m5 = r[5];
            var m6 = r[6];
            var m7 = r[7];
            var m8 = r[8];
            var m9 = r[9];
            var m10 = r[10];
            var m11 = r[11];
            var m12 = r[12];
            var m13 = r[13];
            var m14 = r[14];
            var m15 = r[15];
            var (aa, bb, cc, dd) = (a, b, c, d);
            a = F(a, b, c, d, m0, 0xd76aa478u, 7);
            d = F(d, a, b, c, m1, 0xe8c7b756u, 12);
            c = F(c, d, a, b, m2, 0x242070dbu, 17);
            b = F(b, c, d, a, m3, 0xc1bdceeeu, 22);
            a = F(a, b, c, d, m4, 0xf57c0fafu, 7);
            d = F(d, a, b, c, m5, 0x4787c62au, 12);
            c = F(c, d, a, b, m6, 0xa8304613u, 17);
            b = F(b, c, d, a, m7, 0xfd469501u, 22);
            a = F(a, b, c, d, m8, 0x698098d8u, 7);
            d = F(d, a, b, c, m9, 0x8b44f7afu, 12);
            c = F(c, d, a, b, m10, 0xffff5bb1u, 17);
            b = F(b, c, d, a, m11, 0x895cd7beu, 22);
            a = F(a, b, c, d, m12, 0x6b901122u, 7);
            d = F(d, a, b, c, m13, 0xfd987193u, 12);
            c = F(c, d, a, b, m14, 0xa679438eu, 17);
            b = F(b, c, d, a, m15, 0x49b40821u, 22);
            a = G(a, b, c, d, m1, 0xf61e2562u, 5);
            d = G(d, a, b, c, m6, 0xc040b340u, 9);
            c = G(c, d, a, b, m11, 0x265e5a51u, 14);
            b = G(b, c, d, a, m0, 0xe9b6c7aau, 20);
            a = G(a, b, c, d, m5, 0xd62f105du, 5);
            d = G(d, a, b, c, m10, 0x02441453u, 9);
            c = G(c, d, a, b, m15, 0xd8a1e681u, 14);
            b = G(b, c, d, a, m4, 0xe7d3fbc8u, 20);
            a = G(a, b, c, d, m9, 0x21e1cde6u, 5);
            d = G(d, a, b, c, m14, 0xc33707d6u, 9);
            c = G(c, d, a, b, m3, 0xf4d50d87u, 14);
            b = G(b, c, d, a, m8, 0x455a14edu, 20);
            a = G(a, b, c, d, m13, 0xa9e3e905u, 5);
            d = G(d, a, b, c, m2, 0xfcefa3f8u, 9);
            c = G(c, d, a, b, m7, 0x676f02d9u, 14);
            b = G(b, c, d, a, m12, 0x8d2a4c8au, 20);
            a = H(a, b, c, d, m5, 0xfffa3942u, 4);
            d = H(d, a, b, c, m8, 0x8771f681u, 11);
            c = H(c, d, a, b, m11, 0x6d9d6122u, 16);
            b = H(b, c, d, a, m14, 0xfde5380cu, 23);
            a = H(a, b, c, d, m1, 0xa4beea44u, 4);
            d = H(d, a, b, c, m4, 0x4bdecfa9u, 11);
            c = H(c, d, a, b, m7, 0xf6bb4b60u, 16);
            b = H(b, c, d, a, m10, 0xbebfbc70u, 23);
            a = H(a, b, c, d, m13, 0x289b7ec6u, 4);
            d = H(d, a, b, c, m0, 0xeaa127fau, 11);
            c = H(c, d, a, b, m3, 0xd4ef3085u, 16);
            b = H(b, c, d, a, m6, 0x04881d05u, 23);
            a = H(a, b, c, d, m9, 0xd9d4d039u, 4);
            d = H(d, a, b, c, m12, 0xe6db99e5u, 11);
            c = H(c, d, a, b, m15, 0x1fa27cf8u, 16);
            b = H(b, c, d, a, m2, 0xc4ac5665u, 23);
            a = I(a, b, c, d, m0, 0xf4292244u, 6);
            d = I(d, a, b, c, m7, 0x432aff97u, 10);
            c = I(c, d, a, b, m14, 0xab9423a7u, 15);
            b = I(b, c, d, a, m5, 0xfc93a039u, 21);
            a = I(a, b, c, d, m12, 0x655b59c3u, 6);
            d = I(d, a, b, c, m3, 0x8f0ccc92u, 10);
            c = I(c, d, a, b, m10, 0xffeff47du, 15);
            b = I(b, c, d, a, m1, 0x85845dd1u, 21);
            a = I(a, b, c, d, m8, 0x6fa87e4fu, 6);
            d = I(d, a, b, c, m15, 0xfe2ce6e0u, 10);
            c = I(c, d, a, b, m6, 0xa3014314u, 15);
            b = I(b, c, d, a, m13, 0x4e0811a1u, 21);
            a = I(a, b, c, d, m4, 0xf7537e82u, 6);
            d = I(d, a, b, c, m11, 0xbd3af235u, 10);
            c = I(c, d, a, b, m2, 0x2ad7d2bbu, 15);
            b = I(b, c, d, a, m9, 0xeb86d391u, 21);
            a += aa;
            b += bb;
            c += cc;
            d += dd;
        }
        a.Store(state);
        b.Store(state + Width);
        c.Store(state + (2 * Width));
        d.Store(state + (3 * Width));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> F(Vector512<uint> a, Vector512<uint> b, Vector512<uint> c, Vector512<uint> d, Vector512<uint> m, uint k, [ConstantExpected] byte s) =>
        b + Avx512F.RotateLeft(a + m + Vector512.Create(k) + Avx512F.TernaryLogic(b, c, d, 0xCA), s); // b ? c : d

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> G(Vector512<uint> a, Vector512<uint> b, Vector512<uint> c, Vector512<uint> d, Vector512<uint> m, uint k, [ConstantExpected] byte s) =>
        b + Avx512F.RotateLeft(a + m + Vector512.Create(k) + Avx512F.TernaryLogic(d, b, c, 0xCA), s); // d ? b : c

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> H(Vector512<uint> a, Vector512<uint> b, Vector512<uint> c, Vector512<uint> d, Vector512<uint> m, uint k, [ConstantExpected] byte s) =>
        b + Avx512F.RotateLeft(a + m + Vector512.Create(k) + Avx512F.TernaryLogic(b, c, d, 0x96), s); // b ^ c ^ d

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> I(Vector512<uint> a, Vector512<uint> b, Vector512<uint> c, Vector512<uint> d, Vector512<uint> m, uint k, [ConstantExpected] byte s) =>
        b + Avx512F.RotateLeft(a + m + Vector512.Create(k) + Avx512F.TernaryLogic(b, c, d, 0x39), s); // c ^ (b | ~d)
}
