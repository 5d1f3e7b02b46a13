using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using NanoKv.Core;

namespace NanoKv.Bench;

/// <summary>
/// The load generator: PUT unique keys, GET them back (following redirects), then a 50/50 mix; every
/// phase bounded by a count and a duration. Bodies come from one random 1 MiB block, streamed, never
/// materialised whole, so a 1 GiB object costs the bench no more memory than a 1 MiB one.
/// </summary>
public static partial class BenchRunner
{
    internal const int BlockSize = 1024 * 1024;
    internal static readonly byte[] Block = RandomNumberGenerator.GetBytes(BlockSize);

    public static async Task<BenchResult> RunAsync(BenchOptions o, Action<string> log, CancellationToken ct)
    {
        if (o.Api == BenchApi.Compare && o.Target is null)
        {
            return await CompareOnFreshClustersAsync(o, log, ct);
        }
        var ownsData = string.IsNullOrEmpty(o.DataDir);
        var dataDir = ownsData ? Path.Combine(Path.GetTempPath(), "nanokv-bench-" + Guid.NewGuid().ToString("N")[..8]) : Path.GetFullPath(o.DataDir);
        Directory.CreateDirectory(dataDir);
        LocalCluster? cluster = null;
        try
        {
            var wantsS3 = o.Api != BenchApi.Native;
            string url;
            (string Endpoint, string AccessKey, string SecretKey)? s3 = null;
            if (o.Target is null)
            {
                log($"launching {o.Volumes} volumes + coordinator (replicas {o.Replicas}) on 127.0.0.1:{o.CoordPort}.." + (wantsS3 ? $", S3 on :{o.S3Port}" : "") + $" in {dataDir}");
                cluster = await LocalCluster.StartAsync(dataDir, o.Volumes, o.Replicas, o.CoordPort, o.VolumeStartPort, o.NoVerifyReads, wantsS3 ? o.S3Port : null, ct);
                url = cluster.CoordinatorUrl;
                s3 = cluster.S3;
            }
            else
            {
                // Several coordinators (shared metadata) as a comma list: the native client spreads requests
                // over them, so a GET often reads through another coordinator than the one that took the PUT.
                url = string.Join(',', o.Target.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(t => t.TrimEnd('/')));
                if (wantsS3)
                {
                    s3 = o.S3Endpoint is not null && o.AccessKey is not null && o.SecretKey is not null
                        ? (o.S3Endpoint, o.AccessKey, o.SecretKey)
                        : throw new InvalidOperationException("--s3 against --target needs --s3-endpoint, --access-key and --secret-key");
                }
            }
            using var http = new HttpClient(new SocketsHttpHandler
            {
                MaxConnectionsPerServer = Math.Max(16, o.Concurrency * 2),
                PooledConnectionLifetime = TimeSpan.FromMinutes(10),
                AllowAutoRedirect = true,
            })
            { Timeout = TimeSpan.FromMinutes(30) };
            var run = Guid.NewGuid().ToString("N")[..8];
            var clients = new List<BenchClient>();
            if (o.Api != BenchApi.S3)
            {
                clients.Add(new NativeBenchClient(http, url, o.ProxyGet));
            }
            if (s3 is { } e)
            {
                clients.Add(new S3BenchClient(http, e.Endpoint, e.AccessKey, e.SecretKey, $"bench-{run}"));
            }
            foreach (var c in clients)
            {
                var ready = await c.WaitForWritesAsync(ct);
                log($"{c.Name} endpoint takes writes ({ready.TotalSeconds:0.0}s after launch)");
            }
            var phases = await RunPhasesAsync(o, clients, cluster, run, log, ct);
            var putPhase = phases.First(p => p.Phase == "put");
            var getPhase = phases.First(p => p.Phase == "get");

            var rss = cluster?.PeakRss() ?? [];
            Ceilings? ceilings = null;
            double? putPct = null, getPct = null;
            if (!o.SkipCeilings)
            {
                var bytes = Math.Min(getPhase.Requests * o.Size, 2L * 1024 * 1024 * 1024);
                log($"ceilings: fsync'd writes of {Human(bytes)} × {o.Replicas} replicas (1 writer, then several), then reads, in {dataDir}");
                ceilings = MeasureCeilings(dataDir, o, bytes);
                putPct = 100 * putPhase.MbPerSec / ceilings.WriteMbPerSec;
                getPct = 100 * getPhase.MbPerSec / ceilings.ReadMbPerSec;
            }
            var result = new BenchResult(
                new BenchOptionsDto(o.Volumes, o.Replicas, o.Concurrency, o.Duration.TotalSeconds, o.Count, o.Size, o.Target),
                phases, ceilings, putPct, getPct, rss, $"{Environment.ProcessorCount} cores, {Environment.OSVersion}")
            {
                Api = o.Api,
                S3VsNative = o.Api == BenchApi.Compare ? Ratios(phases) : null,
            };
            await WriteResultAsync(o, result, ct);
            return result;
        }
        finally
        {
            if (cluster is not null)
            {
                await cluster.DisposeAsync();
            }
            if (ownsData)
            {
                try
                {
                    Directory.Delete(dataDir, recursive: true);
                }
                catch (IOException)
                {
                }
            }
        }
    }

    /// <summary>
    /// A launched comparison gives each front end a cluster of its own, launched fresh, native first: the same
    /// phases on one cluster billed the second front end's PUT phase for the first one's leftovers (pinned and
    /// mapped blobs, the memory the guest had to hand back), whichever front end that was. Measured with both
    /// orders on one cluster at 16 MiB: native 5.3–6.9 CPU-s/GiB first (five runs) and 7.7 second, S3 8.0 first and
    /// 8.2–11.6 second. A running cluster (--target) cannot be relaunched, so it keeps the back-to-back way.
    /// </summary>
    internal static async Task WriteResultAsync(BenchOptions o, BenchResult result, CancellationToken ct)
    {
        if (!string.IsNullOrEmpty(o.OutFile))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(o.OutFile))!);
            await File.WriteAllTextAsync(o.OutFile, JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }), ct);
        }
    }

    /// <summary>Unreported warm-up per front end when no cold phases run.</summary>
    private static readonly TimeSpan WarmUp = TimeSpan.FromSeconds(3);

    /// <summary>
    /// Cold PUT+GET per front end (or an unreported warm-up), then PUT, GET and mixed. With several front ends
    /// each phase runs for each of them back to back, so the machine's drift between the two figures is as small as it gets.
    /// </summary>
    private static async Task<List<PhaseResult>> RunPhasesAsync(BenchOptions o, List<BenchClient> clients, LocalCluster? cluster, string run, Action<string> log, CancellationToken ct)
    {
        var phases = new List<PhaseResult>();
        var written = clients.ToDictionary(c => c, _ => new List<string>());
        Func<int, CancellationToken, Task<string?>> Put(BenchClient c, string tag) => async (i, t) =>
        {
            var key = $"bench/{run}/{tag}{i}";
            var error = await c.PutAsync(key, o.Size, t);
            if (error is null)
            {
                lock (written[c])
                {
                    written[c].Add(key);
                }
            }
            return error;
        };
        PhaseResult Tag(PhaseResult p, BenchClient c) => p with { Api = c.Name };
        if (cluster is not null && o.ColdDuration > TimeSpan.Zero)
        {
            // Cold: the first seconds of each front end (JIT of its code, connection pools, caches all new), as a
            // user sees them — for every front end, so no warm phase below pays another one's start-up.
            foreach (var c in clients)
            {
                log($"COLD PUT+GET ({c.Name}), {o.ColdDuration.TotalSeconds:0}s each, right after start");
                var from = written[c].Count;
                phases.Add(Tag(await PhaseAsync("cold-put", o with { Duration = o.ColdDuration }, cluster, ct, Put(c, "c")), c));
                var coldKeys = written[c].Skip(from).ToArray();
                if (coldKeys.Length > 0)
                {
                    phases.Add(Tag(await PhaseAsync("cold-get", o with { Duration = o.ColdDuration, Count = int.MaxValue }, cluster, ct,
                        (i, t) => c.GetAsync(coldKeys[i % coldKeys.Length], o.Size, t)), c));
                }
            }
        }
        else
        {
            // No cold phases reported: still warm every front end up (unmeasured), so the warm phases are warm.
            foreach (var c in clients)
            {
                log($"WARM-UP ({c.Name}), {WarmUp.TotalSeconds:0}s of PUT+GET, not reported");
                var from = written[c].Count;
                await PhaseAsync("warm-up", o with { Duration = WarmUp }, cluster, ct, Put(c, "w"));
                var keys = written[c].Skip(from).ToArray();
                if (keys.Length > 0)
                {
                    await PhaseAsync("warm-up", o with { Duration = WarmUp, Count = int.MaxValue }, cluster, ct, (i, t) => c.GetAsync(keys[i % keys.Length], o.Size, t));
                }
            }
        }
        var warm = new Dictionary<BenchClient, List<string>>();
        foreach (var c in clients)
        {
            // Each PUT phase starts from a synced, empty page cache: otherwise the second front end of a
            // comparison writes into the first one's cache and writeback (measured: 108.8 MB/s cold vs 80.7
            // warm for the same S3 PUT, 11.3 vs 14.5 CPU-s/GiB, on one run).
            var fresh = clients.Count > 1 && o.DropCaches && DropCaches();
            log($"PUT  {Human(o.Size)} objects ({c.Name}), concurrency {o.Concurrency}, ≤{o.Count} objects / ≤{o.Duration.TotalSeconds:0}s" + (fresh ? " (page cache synced and dropped first)" : ""));
            var from = written[c].Count;
            phases.Add(Tag(await PhaseAsync("put", o, cluster, ct, Put(c, "")), c));
            warm[c] = written[c].Skip(from).ToList();
            if (warm[c].Count == 0)
            {
                throw new InvalidOperationException($"no {c.Name} PUT succeeded: {phases[^1].FirstError}");
            }
        }
        foreach (var c in clients)
        {
            var keys = warm[c];
            var cold = o.DropCaches && DropCaches();
            log($"GET  {keys.Count} objects ({c.Name})" + (cold ? " (page cache dropped first)" : ""));
            phases.Add(Tag(await PhaseAsync("get", o with { Count = keys.Count }, cluster, ct, (i, t) => c.GetAsync(keys[i % keys.Count], o.Size, t)), c));
        }
        foreach (var c in clients)
        {
            var keys = warm[c];
            log($"MIXED 50% PUT / 50% GET ({c.Name})");
            var put = Put(c, "m");
            phases.Add(Tag(await PhaseAsync("mixed", o, cluster, ct, (i, t) => i % 2 == 0 ? put(i, t) : c.GetAsync(keys[i % keys.Count], o.Size, t)), c));
        }
        return phases;
    }

    public static string Human(long bytes) => bytes >= 1L << 30 ? $"{bytes / (double)(1L << 30):0.##} GiB" : bytes >= 1 << 20 ? $"{bytes / (double)(1 << 20):0.##} MiB" : $"{bytes / 1024.0:0.##} KiB";

    /// <summary>Parses 16MiB, 1GiB, 512KiB, 2MB or plain bytes.</summary>
    public static long ParseSize(string s)
    {
        s = s.Trim();
        var units = new (string Suffix, long Mult)[] { ("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1000), ("G", 1L << 30), ("M", 1L << 20), ("K", 1L << 10) };
        foreach (var (suffix, mult) in units)
        {
            if (s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                return (long)(double.Parse(s[..^suffix.Length], System.Globalization.CultureInfo.InvariantCulture) * mult);
            }
        }
        return long.Parse(s, System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Runs op(i) from `concurrency` workers until Count ops or Duration, whichever comes first.</summary>
    private static async Task<PhaseResult> PhaseAsync(string name, BenchOptions o, LocalCluster? cluster, CancellationToken ct, Func<int, CancellationToken, Task<string?>> op)
    {
        var cpuBefore = cluster?.CpuSeconds();
        var latencies = new List<double>[o.Concurrency];
        var next = -1;
        long failures = 0;
        string? firstError = null;
        var sw = Stopwatch.StartNew();
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(o.Duration + TimeSpan.FromMinutes(5)); // hard stop for a hung request
        var workers = Enumerable.Range(0, o.Concurrency).Select(w => Task.Run(async () =>
        {
            latencies[w] = [];
            while (sw.Elapsed < o.Duration)
            {
                var i = Interlocked.Increment(ref next);
                if (i >= o.Count)
                {
                    break;
                }
                var t = Stopwatch.GetTimestamp();
                string? error;
                try
                {
                    error = await op(i, deadline.Token);
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException)
                {
                    error = ex.Message;
                }
                latencies[w].Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                if (error is not null)
                {
                    Interlocked.Increment(ref failures);
                    Interlocked.CompareExchange(ref firstError, error, null);
                }
            }
        }, ct)).ToArray();
        await Task.WhenAll(workers);
        var secs = sw.Elapsed.TotalSeconds;
        var all = latencies.SelectMany(l => l).Order().ToArray();
        var ok = all.Length - failures;
        double? cpu = cluster?.CpuSeconds() - cpuBefore;
        var gib = ok * (double)o.Size / (1L << 30);
        return new PhaseResult(name, all.Length, failures, Math.Round(secs, 3),
            Math.Round(ok / secs, 2), Math.Round(ok * o.Size / secs / (1 << 20), 1),
            Pct(all, 50), Pct(all, 90), Pct(all, 99), all.Length == 0 ? 0 : Math.Round(all[^1], 1), firstError)
        {
            ClusterCpuSeconds = cpu is double c ? Math.Round(c, 2) : null,
            CpuSecondsPerGib = cpu is double c2 && gib > 0 ? Math.Round(c2 / gib, 2) : null,
        };
    }

    private static double Pct(double[] sorted, double p) =>
        sorted.Length == 0 ? 0 : Math.Round(sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p / 100 * sorted.Length) - 1)], 1);

    /// <summary>
    /// The same bytes through the bare filesystem: object bytes × replicas written as files with fsync (the
    /// PUT ceiling, expressed per object byte like the PUT figure), then read back (the GET ceiling). Writers
    /// are dedicated threads like fio jobs (one sequential writer understates a disk that serves several
    /// fsyncs at once); the ceiling is the best of one writer and several.
    /// </summary>
    private static Ceilings MeasureCeilings(string dir, BenchOptions o, long objectBytes)
    {
        var ceilingDir = Path.Combine(dir, "ceiling");
        Directory.CreateDirectory(ceilingDir);
        var files = (int)Math.Max(1, objectBytes / o.Size) * o.Replicas;
        var writers = Math.Clamp(o.Concurrency * o.Replicas, 4, 16);
        var one = WriteFiles(ceilingDir, "a", files, o.Size, 1);
        var many = WriteFiles(ceilingDir, "b", files, o.Size, writers);
        var cold = o.DropCaches && DropCaches();
        var readFiles = files / o.Replicas;
        var readSecs = Parallel(Math.Min(writers, readFiles), i =>
        {
            var buffer = new byte[StreamCopier.BufferSize];
            using var h = File.OpenHandle(Path.Combine(ceilingDir, $"b{i}"), FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
            long off = 0;
            int n;
            while ((n = RandomAccess.Read(h, buffer, off)) > 0)
            {
                off += n;
            }
        }, readFiles);
        Directory.Delete(ceilingDir, recursive: true);
        var objectMb = files / o.Replicas * (double)o.Size / (1 << 20);
        var oneMb = Math.Round(objectMb / one, 1);
        var manyMb = Math.Round(objectMb / many, 1);
        return new Ceilings(Math.Max(oneMb, manyMb), oneMb, writers, Math.Round(readFiles * (double)o.Size / (1 << 20) / readSecs, 1),
            $"write: {files} files of {Human(o.Size)} (objects × {o.Replicas} replicas) fsync'd each, by 1 writer ({oneMb} MB/s) and by {writers} parallel writers ({manyMb} MB/s), MB/s per object byte; " +
            $"read: one copy of each object back, {Math.Min(writers, readFiles)} readers, {(cold ? "page cache dropped first (as before the GET phase)" : "page cache not droppable here: memory speed")}");
    }

    /// <summary>Writes `files` files of `size` bytes with `jobs` threads, each file fsync'd, then the folder; returns seconds.</summary>
    private static double WriteFiles(string dir, string prefix, int files, long size, int jobs)
    {
        var secs = Parallel(jobs, i =>
        {
            using var h = File.OpenHandle(Path.Combine(dir, $"{prefix}{i}"), FileMode.Create, FileAccess.Write, FileShare.None);
            for (long off = 0; off < size; off += BlockSize)
            {
                RandomAccess.Write(h, Block.AsSpan(0, (int)Math.Min(BlockSize, size - off)), off);
            }
            RandomAccess.FlushToDisk(h);
        }, files);
        Durable.FsyncDirectory(dir);
        return secs;
    }

    /// <summary>Runs work(0..items-1) on `jobs` dedicated threads (blocking I/O must not wait on the thread pool); returns seconds.</summary>
    private static double Parallel(int jobs, Action<int> work, int items)
    {
        var next = -1;
        var sw = Stopwatch.StartNew();
        var threads = Enumerable.Range(0, jobs).Select(_ => new Thread(() =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < items)
            {
                work(i);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        return sw.Elapsed.TotalSeconds;
    }

    /// <summary>Drops the page cache (root only) so GET and its ceiling both read from the disk; false if not allowed.</summary>
    private static bool DropCaches()
    {
        try
        {
            using (var p = Process.Start("sync"))
            {
                p?.WaitForExit();
            }
            File.WriteAllText("/proc/sys/vm/drop_caches", "3");
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }
}

/// <summary>A request body of `size` bytes cut from one random 1 MiB block: streamed, Content-Length known.</summary>
internal sealed class PatternContent(long size) : HttpContent
{
    private const int BlockSize = BenchRunner.BlockSize;
    private static readonly byte[] Block = BenchRunner.Block;

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        await SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        long sent = 0;
        while (sent < size)
        {
            var n = (int)Math.Min(BlockSize, size - sent);
            await stream.WriteAsync(Block.AsMemory(0, n), cancellationToken);
            sent += n;
        }
    }

    protected override bool TryComputeLength(out long length)
    {
        length = size;
        return true;
    }
}
