using System.CommandLine;
using System.Globalization;
using NanoKv.Bench;
using Spectre.Console;

var volumes = new Option<int>("--volumes") { Description = "Volumes to launch", DefaultValueFactory = _ => 3 };
var replicas = new Option<int>("--replicas") { Description = "Replicas per object", DefaultValueFactory = _ => 3 };
var coordPort = new Option<int>("--coord-port") { Description = "Coordinator port of the launched cluster", DefaultValueFactory = _ => 3000 };
var volumePort = new Option<int>("--volume-port") { Description = "First volume port of the launched cluster", DefaultValueFactory = _ => 3001 };
var concurrency = new Option<int>("--concurrency", "--vus") { Description = "Concurrent requests", DefaultValueFactory = _ => 16 };
var duration = new Option<string>("--duration") { Description = "Time limit per phase (30s, 2m)", DefaultValueFactory = _ => "30s" };
var count = new Option<int>("--count") { Description = "Object limit per phase", DefaultValueFactory = _ => 1000 };
var size = new Option<string>("--size") { Description = "Object size (1MiB, 16MiB, 1GiB or bytes)", DefaultValueFactory = _ => "16MiB" };
var target = new Option<string?>("--target") { Description = "Benchmark a running cluster at this coordinator URL (or URL,URL,...: several coordinators on shared metadata, requests spread round-robin) instead of launching one" };
var data = new Option<string?>("--data") { Description = "Data folder of the launched cluster and the ceiling files (default: a temp folder, removed after)" };
var output = new Option<string?>("--out") { Description = "JSON result file (default: bench-results/bench-<size>-c<concurrency>-<time>.json)" };
var noCeilings = new Option<bool>("--no-ceilings") { Description = "Skip measuring the disk's write/read ceilings" };
var warmCache = new Option<bool>("--keep-page-cache") { Description = "Do not drop the page cache before the GET phase and the read ceiling" };
var noVerify = new Option<bool>("--no-verify-reads") { Description = "Launch volumes with --no-verify-reads (GETs not hashed on the way out)" };
var s3 = new Option<bool>("--s3") { Description = "Load the S3 endpoint (path style, SigV4 UNSIGNED-PAYLOAD) instead of the native API; a launched cluster gets an S3 listener with generated credentials" };
var compare = new Option<bool>("--compare") { Description = "Run every phase through the native API and through S3 and print S3/native ratios (a launched cluster: a fresh one for each API, native first; --target: phases back to back on it)" };
var proxyGet = new Option<bool>("--proxy-get") { Description = "Native GETs streamed through the coordinator (?proxy=1), as S3 GETs always are, instead of following the 302" };
var s3Port = new Option<int>("--s3-port") { Description = "S3 port of the launched cluster", DefaultValueFactory = _ => 9000 };
var s3Endpoint = new Option<string?>("--s3-endpoint") { Description = "With --target: the running coordinator's S3 endpoint URL" };
var accessKey = new Option<string?>("--access-key") { Description = "With --target: S3 access key (default: $AWS_ACCESS_KEY_ID)" };
var secretKey = new Option<string?>("--secret-key") { Description = "With --target: S3 secret key (default: $AWS_SECRET_ACCESS_KEY)" };
var rounds = new Option<int>("--rounds") { Description = "With --compare on a launched cluster: rounds of both APIs, each on fresh clusters, the first API alternating; the ratios printed are the rounds' medians", DefaultValueFactory = _ => 1 };
var cold = new Option<string>("--cold") { Description = "Length of the cold PUT and GET phases right after the launched cluster takes writes (0 = none)", DefaultValueFactory = _ => "5s" };

var root = new RootCommand("nanokv benchmark: PUT, GET and mixed load against a local or running cluster, compared with the disk's own limits")
{
    volumes, replicas, coordPort, volumePort, concurrency, duration, count, size, target, data, output, noCeilings, warmCache, noVerify, cold,
    s3, compare, proxyGet, s3Port, s3Endpoint, accessKey, secretKey, rounds,
};
root.SetAction(async (p, ct) =>
{
    if (Console.IsOutputRedirected)
    {
        AnsiConsole.Profile.Width = 160; // keep table columns readable in logs
    }
    BenchOptions o;
    try
    {
        var bytes = BenchRunner.ParseSize(p.GetValue(size)!);
        if (p.GetValue(rounds) is var n && (n < 1 || (n > 1 && (!p.GetValue(compare) || p.GetValue(target) is not null))))
        {
            throw new FormatException("--rounds takes 1 or more, and more than 1 only with --compare on a launched cluster (not --target)");
        }
        o = new BenchOptions
        {
            Volumes = p.GetValue(volumes),
            Replicas = p.GetValue(replicas),
            CoordPort = p.GetValue(coordPort),
            VolumeStartPort = p.GetValue(volumePort),
            Concurrency = Math.Max(1, p.GetValue(concurrency)),
            Duration = TimeSpan.FromSeconds(NanoKv.Ops.OpsOptions.ParseDuration(p.GetValue(duration)!)),
            Count = p.GetValue(count),
            Size = bytes,
            Target = p.GetValue(target),
            DataDir = p.GetValue(data) ?? "",
            OutFile = p.GetValue(output) ?? Path.Combine("bench-results", $"bench-{(p.GetValue(compare) ? "compare-" : p.GetValue(s3) ? "s3-" : "")}{BenchRunner.Human(bytes).Replace(" ", "", StringComparison.Ordinal)}-c{p.GetValue(concurrency)}-{DateTime.UtcNow:yyyyMMddTHHmmss}.json"),
            SkipCeilings = p.GetValue(noCeilings),
            DropCaches = !p.GetValue(warmCache),
            NoVerifyReads = p.GetValue(noVerify),
            ColdDuration = TimeSpan.FromSeconds(NanoKv.Ops.OpsOptions.ParseDuration(p.GetValue(cold)!)),
            Api = p.GetValue(compare) ? BenchApi.Compare : p.GetValue(s3) ? BenchApi.S3 : BenchApi.Native,
            S3Port = p.GetValue(s3Port),
            Rounds = p.GetValue(rounds),
            ProxyGet = p.GetValue(proxyGet),
            S3Endpoint = p.GetValue(s3Endpoint),
            AccessKey = p.GetValue(accessKey) ?? Environment.GetEnvironmentVariable("AWS_ACCESS_KEY_ID"),
            SecretKey = p.GetValue(secretKey) ?? Environment.GetEnvironmentVariable("AWS_SECRET_ACCESS_KEY"),
        };
    }
    catch (FormatException ex)
    {
        await Console.Error.WriteLineAsync($"error: {ex.Message}");
        return 2;
    }
    try
    {
        var result = await BenchRunner.RunAsync(o, line => Console.Error.WriteLine(line), ct);
        Print(result, o);
        Console.WriteLine($"results: {o.OutFile}");
        var failed = result.Phases.Sum(ph => ph.Failures);
        if (failed > 0)
        {
            // Loud: a throughput figure with failed requests behind it is not a result.
            await Console.Error.WriteLineAsync($"FAILED: {failed} requests failed ({string.Join(", ", result.Phases.Where(ph => ph.Failures > 0).Select(ph => $"{ph.Phase}: {ph.Failures}, first: {ph.FirstError}"))})");
            return 1;
        }
        return 0;
    }
    catch (Exception ex) when (ex is InvalidOperationException or TimeoutException or HttpRequestException)
    {
        await Console.Error.WriteLineAsync($"error: {ex.Message}");
        return 2;
    }
});
return await root.Parse(args).InvokeAsync();

static void Print(BenchResult r, BenchOptions o)
{
    var t = new Table().Title($"{BenchRunner.Human(o.Size)} objects, {o.Volumes} volumes, {o.Replicas} replicas, concurrency {o.Concurrency}");
    foreach (var col in new[] { "api", "phase", "requests", "failures", "obj/s", "MB/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "cluster CPU s/GiB" })
    {
        t.AddColumn(new TableColumn(col).RightAligned());
    }
    foreach (var ph in r.Phases)
    {
        t.AddRow(ph.Round is int round ? $"{ph.Api} r{round}" : ph.Api, ph.Phase, F(ph.Requests), ph.Failures > 0 ? $"[red]{F(ph.Failures)}[/]" : "0", F(ph.ObjectsPerSec), F(ph.MbPerSec), F(ph.P50Ms), F(ph.P90Ms), F(ph.P99Ms), F(ph.MaxMs),
            ph.CpuSecondsPerGib is double cpu ? F(cpu) : "-");
    }
    AnsiConsole.Write(t);
    if (r.Rounds is { Count: > 1 } rs)
    {
        var rt = new Table().Title($"S3 / native per round (fresh clusters each; first API: {string.Join(", ", rs.Select(x => x.First))})");
        foreach (var col in new[] { "phase" }.Concat(rs.Select(x => $"round {x.Round}")).Append("median"))
        {
            rt.AddColumn(new TableColumn(col).RightAligned());
        }
        foreach (var m in r.S3VsNative!)
        {
            rt.AddRow([m.Phase, .. rs.Select(x => x.Ratios.FirstOrDefault(y => y.Phase == m.Phase) is { } y ? F(y.Ratio) : "-"), F(m.Ratio)]);
        }
        AnsiConsole.Write(rt);
    }
    else if (r.S3VsNative is { Count: > 0 } ratios)
    {
        var rt = new Table().Title(o.Target is null ? "S3 vs native (a fresh cluster each)" : "S3 vs native (same cluster, phases back to back)");
        foreach (var col in new[] { "phase", "native MB/s", "S3 MB/s", "S3/native" })
        {
            rt.AddColumn(new TableColumn(col).RightAligned());
        }
        foreach (var x in ratios)
        {
            rt.AddRow(x.Phase, F(x.NativeMbPerSec), F(x.S3MbPerSec), F(x.Ratio));
        }
        AnsiConsole.Write(rt);
    }
    if (r.Ceilings is { } c)
    {
        var put = r.Phases.First(ph => ph.Phase == "put");
        var get = r.Phases.First(ph => ph.Phase == "get");
        AnsiConsole.MarkupLineInterpolated($"PUT {put.MbPerSec} MB/s = {r.PutPct:0}% of the fsync'd write ceiling ({c.WriteMbPerSec} MB/s of object bytes × {o.Replicas} replicas; {c.Writers} parallel writers, 1 writer: {c.WriteOneWriterMbPerSec} MB/s)");
        AnsiConsole.MarkupLineInterpolated($"GET {get.MbPerSec} MB/s = {r.GetPct:0}% of the read ceiling ({c.ReadMbPerSec} MB/s)");
    }
    foreach (var (name, rss) in r.PeakRss.OrderBy(kv => kv.Key, StringComparer.Ordinal))
    {
        AnsiConsole.MarkupLineInterpolated($"peak RSS {name}: {rss / (1024 * 1024)} MB");
    }
    foreach (var ph in r.Phases.Where(ph => ph.FirstError is not null))
    {
        AnsiConsole.MarkupLineInterpolated($"[red]{ph.Phase}: first error: {ph.FirstError}[/]");
    }
}

static string F(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);
