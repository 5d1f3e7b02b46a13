using System.Text.Json.Serialization;

namespace NanoKv.Bench;

/// <summary>What to run.</summary>
public sealed record BenchOptions
{
    public int Volumes { get; init; } = 3;

    public int Replicas { get; init; } = 3;

    public int CoordPort { get; init; } = 3000;

    public int VolumeStartPort { get; init; } = 3001;

    public int Concurrency { get; init; } = 16;

    /// <summary>Time limit of each phase.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Object limit of the PUT phase (and of GET/mixed); the phase stops at whichever limit comes first.</summary>
    public int Count { get; init; } = 1000;

    public long Size { get; init; } = 16L * 1024 * 1024;

    /// <summary>A running coordinator to target instead of launching a cluster.</summary>
    public string? Target { get; init; }

    public string DataDir { get; init; } = "";

    public string OutFile { get; init; } = "";

    public bool SkipCeilings { get; init; }

    /// <summary>Drop the page cache before reads (root only), so GET and its ceiling read from the disk.</summary>
    public bool DropCaches { get; init; } = true;

    /// <summary>Launch volumes with --no-verify-reads (to measure what verified reads cost).</summary>
    public bool NoVerifyReads { get; init; }

    /// <summary>Length of the cold PUT and GET phases run right after a launched cluster can take writes (zero: none).</summary>
    public TimeSpan ColdDuration { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The front end to load: native, S3, or both phase by phase.</summary>
    public BenchApi Api { get; init; } = BenchApi.Native;

    /// <summary>Native GETs streamed through the coordinator (?proxy=1) instead of following the 302: the path S3 GETs always take.</summary>
    public bool ProxyGet { get; init; }

    /// <summary>Compare rounds on launched clusters (fresh ones each, the first API alternating); ratios are the rounds' medians.</summary>
    public int Rounds { get; init; } = 1;

    /// <summary>S3 port of a launched cluster (given generated credentials).</summary>
    public int S3Port { get; init; } = 9000;

    /// <summary>With --target: the running coordinator's S3 endpoint and credentials.</summary>
    public string? S3Endpoint { get; init; }

    public string? AccessKey { get; init; }

    public string? SecretKey { get; init; }
}

/// <summary>Latency and throughput of one phase.</summary>
public sealed record PhaseResult(
    [property: JsonPropertyName("phase")] string Phase,
    [property: JsonPropertyName("requests")] long Requests,
    [property: JsonPropertyName("failures")] long Failures,
    [property: JsonPropertyName("seconds")] double Seconds,
    [property: JsonPropertyName("objects_per_sec")] double ObjectsPerSec,
    [property: JsonPropertyName("mb_per_sec")] double MbPerSec,
    [property: JsonPropertyName("p50_ms")] double P50Ms,
    [property: JsonPropertyName("p90_ms")] double P90Ms,
    [property: JsonPropertyName("p99_ms")] double P99Ms,
    [property: JsonPropertyName("max_ms")] double MaxMs,
    [property: JsonPropertyName("first_error")] string? FirstError)
{
    /// <summary>CPU time (user + system) the cluster's processes spent during the phase; null against --target.</summary>
    [JsonPropertyName("cluster_cpu_seconds")]
    public double? ClusterCpuSeconds { get; init; }

    /// <summary>Cluster CPU-seconds per GiB of object bytes moved by successful requests.</summary>
    [JsonPropertyName("cpu_seconds_per_gib")]
    public double? CpuSecondsPerGib { get; init; }

    /// <summary>"native" or "s3".</summary>
    [JsonPropertyName("api")]
    public string Api { get; init; } = "native";

    /// <summary>The compare round (1-based) when there are several, else null.</summary>
    [JsonPropertyName("round")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? Round { get; init; }
}

/// <summary>One compare round: which API ran first on its fresh cluster, and that round's ratios.</summary>
public sealed record CompareRound(
    [property: JsonPropertyName("round")] int Round,
    [property: JsonPropertyName("first")] string First,
    [property: JsonPropertyName("s3_vs_native")] List<ApiRatio> Ratios);

/// <summary>One warm phase through both front ends: S3 MB/s over native MB/s.</summary>
public sealed record ApiRatio(
    [property: JsonPropertyName("phase")] string Phase,
    [property: JsonPropertyName("native_mb_per_sec")] double NativeMbPerSec,
    [property: JsonPropertyName("s3_mb_per_sec")] double S3MbPerSec,
    [property: JsonPropertyName("s3_over_native")] double Ratio);

/// <summary>The machine's own limits for the same bytes.</summary>
public sealed record Ceilings(
    [property: JsonPropertyName("fsync_write_mb_per_sec")] double WriteMbPerSec,
    [property: JsonPropertyName("fsync_write_one_writer_mb_per_sec")] double WriteOneWriterMbPerSec,
    [property: JsonPropertyName("writers")] int Writers,
    [property: JsonPropertyName("read_mb_per_sec")] double ReadMbPerSec,
    [property: JsonPropertyName("note")] string Note);

/// <summary>Everything a run measured.</summary>
public sealed record BenchResult(
    [property: JsonPropertyName("options")] BenchOptionsDto Options,
    [property: JsonPropertyName("phases")] List<PhaseResult> Phases,
    [property: JsonPropertyName("ceilings")] Ceilings? Ceilings,
    [property: JsonPropertyName("put_pct_of_write_ceiling")] double? PutPct,
    [property: JsonPropertyName("get_pct_of_read_ceiling")] double? GetPct,
    [property: JsonPropertyName("peak_rss_bytes")] Dictionary<string, long> PeakRss,
    [property: JsonPropertyName("machine")] string Machine)
{
    [JsonPropertyName("api")]
    [JsonConverter(typeof(JsonStringEnumConverter<BenchApi>))]
    public BenchApi Api { get; init; }

    /// <summary>Only in compare mode; with several rounds, each figure is the median over the rounds.</summary>
    [JsonPropertyName("s3_vs_native")]
    public List<ApiRatio>? S3VsNative { get; init; }

    /// <summary>Only in compare mode on launched clusters: each round's order and ratios.</summary>
    [JsonPropertyName("rounds")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public List<CompareRound>? Rounds { get; init; }
}

public sealed record BenchOptionsDto(int Volumes, int Replicas, int Concurrency, double DurationSecs, int Count, long Size, string? Target);

