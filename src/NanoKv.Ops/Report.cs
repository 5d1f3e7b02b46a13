using System.Collections.Concurrent;
using System.Text.Json.Serialization;

namespace NanoKv.Ops;

/// <summary>What a run found and did: counts per category, bytes moved, sample details, duration.</summary>
public sealed class Report
{
    private const int MaxDetails = 200;
    private readonly ConcurrentDictionary<string, long> _counts = new();
    private readonly ConcurrentQueue<string> _details = new();
    private readonly HashSet<string> _problemCategories;
    private long _bytes;
    private int _detailCount;

    public Report(string command, bool dryRun, params string[] problemCategories)
    {
        Command = command;
        DryRun = dryRun;
        _problemCategories = [.. problemCategories];
    }

    [JsonPropertyName("command")]
    public string Command { get; }

    [JsonPropertyName("dry_run")]
    public bool DryRun { get; }

    [JsonPropertyName("counts")]
    public SortedDictionary<string, long> Counts => new(_counts, StringComparer.Ordinal);

    [JsonPropertyName("bytes_moved")]
    public long BytesMoved => Interlocked.Read(ref _bytes);

    [JsonPropertyName("duration_secs")]
    public double DurationSecs { get; set; }

    [JsonPropertyName("resumed_keys")]
    public int ResumedKeys { get; set; }

    /// <summary>Problem lines and, in dry-run, the planned actions (first 200).</summary>
    [JsonPropertyName("details")]
    public List<string> Details => [.. _details];

    /// <summary>Categories whose non-zero count means "not clean".</summary>
    [JsonPropertyName("problem_categories")]
    public List<string> ProblemCategories => [.. _problemCategories.Order(StringComparer.Ordinal)];

    [JsonPropertyName("clean")]
    public bool Clean => _problemCategories.All(c => Count(c) == 0);

    /// <summary>0 when clean; 1 when problems were found or left.</summary>
    [JsonPropertyName("exit_code")]
    public int ExitCode => Clean ? 0 : 1;

    public long Count(string category) => _counts.TryGetValue(category, out var n) ? n : 0;

    public void Add(string category, long n = 1) => _counts.AddOrUpdate(category, n, (_, v) => v + n);

    /// <summary>Makes a category show (as 0) even when nothing happened in it.</summary>
    public void Declare(params string[] categories)
    {
        foreach (var c in categories)
        {
            _counts.TryAdd(c, 0);
        }
    }

    public void AddBytes(long n) => Interlocked.Add(ref _bytes, n);

    public void Detail(string line)
    {
        if (Interlocked.Increment(ref _detailCount) <= MaxDetails)
        {
            _details.Enqueue(line);
        }
    }

    /// <summary>Restores a report received as JSON from a live coordinator.</summary>
    public static Report FromDto(ReportDto dto)
    {
        var r = new Report(dto.Command, dto.DryRun, [.. dto.ProblemCategories]) { DurationSecs = dto.DurationSecs, ResumedKeys = dto.ResumedKeys };
        foreach (var (k, v) in dto.Counts)
        {
            r.Add(k, v);
        }
        r.AddBytes(dto.BytesMoved);
        foreach (var d in dto.Details)
        {
            r.Detail(d);
        }
        return r;
    }
}

/// <summary>Wire form of <see cref="Report"/>.</summary>
public sealed record ReportDto(
    [property: JsonPropertyName("command")] string Command,
    [property: JsonPropertyName("dry_run")] bool DryRun,
    [property: JsonPropertyName("counts")] Dictionary<string, long> Counts,
    [property: JsonPropertyName("bytes_moved")] long BytesMoved,
    [property: JsonPropertyName("duration_secs")] double DurationSecs,
    [property: JsonPropertyName("resumed_keys")] int ResumedKeys,
    [property: JsonPropertyName("details")] List<string> Details,
    [property: JsonPropertyName("problem_categories")] List<string> ProblemCategories);

/// <summary>Live counters a progress display (or GET /admin/jobs/{id}) reads.</summary>
public sealed class ProgressState
{
    private long _done;
    private long _total;

    [JsonPropertyName("phase")]
    public string Phase { get; set; } = "starting";

    [JsonPropertyName("done")]
    public long Done => Interlocked.Read(ref _done);

    [JsonPropertyName("total")]
    public long Total => Interlocked.Read(ref _total);

    public void Start(string phase, long total)
    {
        Phase = phase;
        Interlocked.Exchange(ref _total, total);
        Interlocked.Exchange(ref _done, 0);
    }

    public void Step() => Interlocked.Increment(ref _done);
}
