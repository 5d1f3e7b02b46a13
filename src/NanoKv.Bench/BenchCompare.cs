namespace NanoKv.Bench;

/// <summary>
/// S3 against native on launched clusters: each API on a freshly launched cluster of its own (the second PUT phase
/// on one cluster paid for the first one's leftovers). One round runs native first; with several rounds the first
/// API alternates and every figure is the median of the rounds, because this machine's run-to-run spread (±15 %
/// on one API alone) is larger than the difference being measured.
/// </summary>
public static partial class BenchRunner
{
    private static async Task<BenchResult> CompareOnFreshClustersAsync(BenchOptions o, Action<string> log, CancellationToken ct)
    {
        var phases = new List<PhaseResult>();
        var rounds = new List<CompareRound>();
        var rss = new Dictionary<string, long>();
        BenchResult? first = null;
        for (var round = 1; round <= Math.Max(1, o.Rounds); round++)
        {
            var nativeFirst = round % 2 == 1;
            var tag = o.Rounds > 1 ? $"round {round}: " : "";
            string Dir(string api) => string.IsNullOrEmpty(o.DataDir) ? "" : Path.Combine(o.DataDir, o.Rounds > 1 ? $"r{round}-{api}" : api);
            // The disk's ceilings once, with the first native run.
            Task<BenchResult> Run(BenchApi api) => RunAsync(o with
            {
                Api = api,
                OutFile = "",
                DataDir = Dir(api == BenchApi.Native ? "native" : "s3"),
                SkipCeilings = o.SkipCeilings || api != BenchApi.Native || round > 1,
            }, log, ct);
            if (o.Rounds > 1)
            {
                log($"ROUND {round} of {o.Rounds}, {(nativeFirst ? "native" : "s3")} first");
            }
            BenchResult native, s3;
            if (nativeFirst)
            {
                native = await Run(BenchApi.Native);
                log($"{tag}native done; a fresh cluster for S3");
                s3 = await Run(BenchApi.S3);
            }
            else
            {
                s3 = await Run(BenchApi.S3);
                log($"{tag}S3 done; a fresh cluster for native");
                native = await Run(BenchApi.Native);
            }
            first ??= native;
            // Interleaved per phase, as a back-to-back comparison lists them.
            var these = native.Phases.Concat(s3.Phases)
                .OrderBy(p => p.Phase switch { "cold-put" or "cold-get" => p.Api == "native" ? 0 : 1, "put" => 2, "get" => 3, _ => 4 })
                .Select(p => o.Rounds > 1 ? p with { Round = round } : p)
                .ToList();
            phases.AddRange(these);
            rounds.Add(new CompareRound(round, nativeFirst ? "native" : "s3", Ratios(these)));
            foreach (var (name, bytes) in native.PeakRss.Concat(s3.PeakRss.Select(kv => KeyValuePair.Create("s3 cluster " + kv.Key, kv.Value))))
            {
                rss[name] = Math.Max(bytes, rss.GetValueOrDefault(name));
            }
        }
        var result = first! with { Phases = phases, PeakRss = rss, Api = BenchApi.Compare, S3VsNative = Median(rounds), Rounds = rounds };
        await WriteResultAsync(o, result, ct);
        return result;
    }

    /// <summary>S3 throughput over native per warm phase (1.0 = as fast).</summary>
    private static List<ApiRatio> Ratios(List<PhaseResult> phases) =>
        phases.Where(p => p.Api == "s3" && !p.Phase.StartsWith("cold", StringComparison.Ordinal))
            .Select(s3 => (s3, native: phases.FirstOrDefault(p => p.Api == "native" && p.Phase == s3.Phase)))
            .Where(x => x.native is { MbPerSec: > 0 })
            .Select(x => new ApiRatio(x.s3.Phase, x.native!.MbPerSec, x.s3.MbPerSec, Math.Round(x.s3.MbPerSec / x.native.MbPerSec, 3)))
            .ToList();

    /// <summary>Per phase, the median of the rounds' figures (each column on its own).</summary>
    internal static List<ApiRatio> Median(List<CompareRound> rounds) =>
        rounds[0].Ratios.Select(x =>
        {
            var all = rounds.Select(r => r.Ratios.FirstOrDefault(y => y.Phase == x.Phase)).OfType<ApiRatio>().ToList();
            return new ApiRatio(x.Phase, MedianOf(all.Select(y => y.NativeMbPerSec)), MedianOf(all.Select(y => y.S3MbPerSec)), Math.Round(MedianOf(all.Select(y => y.Ratio)), 3));
        }).ToList();

    private static double MedianOf(IEnumerable<double> values)
    {
        var v = values.Order().ToList();
        return v.Count % 2 == 1 ? v[v.Count / 2] : (v[(v.Count / 2) - 1] + v[v.Count / 2]) / 2;
    }
}
