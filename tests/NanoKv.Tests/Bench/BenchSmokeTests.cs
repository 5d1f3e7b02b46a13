using System.Text.Json;
using NanoKv.Bench;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Bench;

/// <summary>Keeps the benchmark command working: a few seconds of small objects. Asserts nothing about speed.</summary>
public class BenchSmokeTests
{
    [Fact]
    public async Task ABriefBenchmarkRunsWithoutFailuresAndWritesJson()
    {
        var dir = TempDir.Create("bench");
        try
        {
            var basePort = FreeRange(4);
            var o = new BenchOptions
            {
                Volumes = 3,
                Replicas = 3,
                CoordPort = basePort,
                VolumeStartPort = basePort + 1,
                Concurrency = 2,
                Count = 12,
                Duration = TimeSpan.FromSeconds(10),
                Size = 256 * 1024,
                DataDir = Path.Combine(dir, "data"),
                OutFile = Path.Combine(dir, "out.json"),
                DropCaches = false,
                ColdDuration = TimeSpan.FromSeconds(1),
            };
            var result = await BenchRunner.RunAsync(o, _ => { }, CancellationToken.None);
            Assert.Equal(["cold-put", "cold-get", "put", "get", "mixed"], result.Phases.Select(p => p.Phase));
            Assert.All(result.Phases, p => Assert.Equal(0, p.Failures));
            Assert.Equal(12, result.Phases.Single(p => p.Phase == "put").Requests);
            // CPU cost of the launched cluster's processes is measured for every phase (/proc counts 10 ms ticks,
            // so a phase over in a few milliseconds can honestly read 0).
            Assert.All(result.Phases, p => Assert.True(p.CpuSecondsPerGib > 0 || p.Seconds < 0.2, $"{p.Phase}: no CPU figure in {p.Seconds} s"));
            Assert.NotNull(result.Ceilings);
            Assert.True(result.Ceilings.Writers >= 4, "the write ceiling uses several parallel writers");
            Assert.Equal(4, result.PeakRss.Count);
            using var json = JsonDocument.Parse(await File.ReadAllTextAsync(o.OutFile));
            Assert.Equal(5, json.RootElement.GetProperty("phases").GetArrayLength());
        }
        finally
        {
            TempDir.Delete(dir);
        }
    }

    [Fact]
    public async Task CompareModeRunsEveryPhaseThroughNativeAndS3()
    {
        var dir = TempDir.Create("bench-s3");
        try
        {
            var basePort = FreeRange(5);
            var o = new BenchOptions
            {
                CoordPort = basePort,
                VolumeStartPort = basePort + 1,
                S3Port = basePort + 4,
                Api = BenchApi.Compare,
                Concurrency = 2,
                Count = 8,
                Duration = TimeSpan.FromSeconds(10),
                Size = 256 * 1024,
                DataDir = Path.Combine(dir, "data"),
                OutFile = Path.Combine(dir, "out.json"),
                DropCaches = false,
                SkipCeilings = true,
                ColdDuration = TimeSpan.FromSeconds(1),
                Rounds = 2,
            };
            var log = new List<string>();
            var result = await BenchRunner.RunAsync(o, line => { lock (log) { log.Add(line); } }, CancellationToken.None);
            // Each front end gets its own cold phases, so S3's start-up (JIT of its code) never lands in a warm phase.
            string[] round = ["native:cold-put", "native:cold-get", "s3:cold-put", "s3:cold-get", "native:put", "s3:put", "native:get", "s3:get", "native:mixed", "s3:mixed"];
            Assert.Equal([.. round.Select(p => "1:" + p), .. round.Select(p => "2:" + p)], result.Phases.Select(p => $"{p.Round}:{p.Api}:{p.Phase}"));
            // The first API alternates, and each round launched its own clusters in that order.
            Assert.Equal(["native", "s3"], result.Rounds!.Select(r => r.First));
            var launches = log.Where(l => l.StartsWith("launching", StringComparison.Ordinal)).Select(l => l.Contains(", S3 on", StringComparison.Ordinal) ? "s3" : "native");
            Assert.Equal(["native", "s3", "s3", "native"], launches);
            Assert.All(result.Phases, p => Assert.True(p.Failures == 0, $"{p.Api} {p.Phase}: {p.FirstError}"));
            Assert.All(result.Phases.Where(p => p.Api == "s3" && p.Phase == "put"), p => Assert.Equal(8, p.Requests));
            // A launched comparison runs each API on a cluster of its own (the second one's processes are listed apart).
            Assert.Contains(result.PeakRss.Keys, k => k.StartsWith("s3 cluster ", StringComparison.Ordinal));
            Assert.Contains(result.PeakRss.Keys, k => !k.StartsWith("s3 cluster ", StringComparison.Ordinal));
            Assert.Equal(["put", "get", "mixed"], result.S3VsNative!.Select(r => r.Phase));
            // Two rounds: each printed ratio is the mean of the two (the median of an even count).
            Assert.All(result.S3VsNative!, m => Assert.Equal((result.Rounds![0].Ratios.Single(r => r.Phase == m.Phase).Ratio + result.Rounds[1].Ratios.Single(r => r.Phase == m.Phase).Ratio) / 2, m.Ratio, 3));
            using var json = JsonDocument.Parse(await File.ReadAllTextAsync(o.OutFile));
            Assert.Equal("Compare", json.RootElement.GetProperty("api").GetString());
            Assert.Equal(3, json.RootElement.GetProperty("s3_vs_native").GetArrayLength());
            Assert.Equal(2, json.RootElement.GetProperty("rounds").GetArrayLength());
        }
        finally
        {
            TempDir.Delete(dir);
        }
    }

    [Theory]
    [InlineData("16MiB", 16L << 20)]
    [InlineData("1GiB", 1L << 30)]
    [InlineData("2MB", 2_000_000)]
    [InlineData("4096", 4096)]
    public void SizesParse(string text, long bytes) => Assert.Equal(bytes, BenchRunner.ParseSize(text));

    /// <summary>A run of n consecutive ports that are free right now.</summary>
    private static int FreeRange(int n)
    {
        for (var attempt = 0; attempt < 50; attempt++)
        {
            var start = TestCluster.FreePort();
            var ok = true;
            for (var i = 1; i < n && ok; i++)
            {
                try
                {
                    using var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, start + i);
                    l.Start();
                }
                catch (System.Net.Sockets.SocketException)
                {
                    ok = false;
                }
            }
            if (ok)
            {
                return start;
            }
        }
        throw new InvalidOperationException("no free port range");
    }
}
