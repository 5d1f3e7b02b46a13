using System.CommandLine;
using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization;
using NanoKv.Core;
using NanoKv.Metadata;
using Spectre.Console;

namespace NanoKv.Ops;

/// <summary>State of a job run by a live coordinator (GET /admin/jobs/{id}).</summary>
public sealed record JobStatus(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("command")] string Command,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("phase")] string Phase,
    [property: JsonPropertyName("done")] long Done,
    [property: JsonPropertyName("total")] long Total,
    [property: JsonPropertyName("report")] ReportDto? Report,
    [property: JsonPropertyName("error")] string? Error);

/// <summary>The ops subcommands of `coord`: offline against --index, or live against --coord.</summary>
public static class OpsCli
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    private static readonly Dictionary<string, string> Descriptions = new()
    {
        ["rebuild"] = "Reconstruct metadata from the volumes (never resurrects deleted keys)",
        ["verify"] = "Audit replicas: under-replicated, corrupted, unindexed and should-GC files (read-only)",
        ["repair"] = "Copy data until every key has N verified replicas (never deletes)",
        ["gc"] = "Expire old tombstones, sweep temp files, optionally drop extra and orphan copies",
        ["rebalance"] = "Move data so each key lives on its current HRW target set",
    };

    /// <summary>rebuild, verify, repair, gc and rebalance, ready to add to the `coord` root command.</summary>
    public static IEnumerable<Command> All() => NanoKv.Ops.Commands.Names.Select(Build);

    private static Command Build(string name)
    {
        var index = new Option<string?>("--index", "--db") { Description = "RocksDB index folder (offline mode: the coordinator must be stopped)" };
        var coord = new Option<string?>("--coord") { Description = "URL of a running coordinator that runs the job (live mode)" };
        var nodes = new Option<string?>("--nodes") { Description = "Volumes as URL,URL or id=URL,id=URL (default: the nodes the index knows)" };
        var deep = new Option<bool>("--deep") { Description = "Compare BLAKE3 of every copy (reads all data; slower)" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Print what would be done; change nothing" };
        var concurrency = new Option<int>("--concurrency") { Description = "Keys processed at once", DefaultValueFactory = _ => 16 };
        var perNode = new Option<int>("--concurrency-per-node") { Description = "Calls at once against one volume", DefaultValueFactory = _ => name == "repair" ? 2 : 4 };
        var replicas = new Option<int?>("--replicas") { Description = "Target replicas per key (default: each key's recorded count)" };
        var json = new Option<bool>("--json") { Description = "Print the final report as JSON" };
        var secret = new Option<string?>("--secret") { Description = $"Cluster secret (default: ${ClusterAuth.EnvVar})" };
        var journal = new Option<string?>("--journal") { Description = "Journal folder for resumable runs (default: INDEX/ops-journal)" };
        var ttl = new Option<string>("--tombstone-ttl") { Description = "gc: expire tombstones older than this (7d, 12h, 30m, 45s)", DefaultValueFactory = _ => "7d" };
        var purgeMeta = new Option<bool>("--purge-tombstone-meta") { Description = "gc: also remove expired tombstones from the index" };
        var extraneous = new Option<bool>("--delete-extraneous") { Description = "gc: delete copies on nodes outside a key's replica set (never the last valid copy)" };
        var orphans = new Option<bool>("--purge-orphans") { Description = "gc: delete files no metadata refers to (run rebuild first if the index was lost!)" };
        var sweep = new Option<string>("--sweep-tmp-age") { Description = "gc: delete temp files (and S3 blobs no object refers to) older than this", DefaultValueFactory = _ => "1h" };
        var uploadTtl = new Option<string>("--upload-ttl") { Description = "gc: abort S3 multipart uploads started longer ago than this", DefaultValueFactory = _ => "7d" };

        var cmd = new Command(name, Descriptions[name]) { index, coord, nodes, deep, dryRun, concurrency, perNode, replicas, json, secret, journal };
        if (name == "gc")
        {
            cmd.Options.Add(ttl);
            cmd.Options.Add(purgeMeta);
            cmd.Options.Add(extraneous);
            cmd.Options.Add(orphans);
            cmd.Options.Add(sweep);
            cmd.Options.Add(uploadTtl);
        }
        cmd.SetAction(async (p, ct) =>
        {
            OpsOptions options;
            try
            {
                options = new OpsOptions
                {
                    Command = name,
                    Nodes = SplitList(p.GetValue(nodes)),
                    Deep = p.GetValue(deep),
                    DryRun = p.GetValue(dryRun),
                    Concurrency = p.GetValue(concurrency),
                    ConcurrencyPerNode = p.GetValue(perNode),
                    Replicas = p.GetValue(replicas),
                    TombstoneTtlSecs = OpsOptions.ParseDuration(p.GetValue(ttl) ?? "7d"),
                    PurgeTombstoneMeta = p.GetValue(purgeMeta),
                    DeleteExtraneous = p.GetValue(extraneous),
                    PurgeOrphans = p.GetValue(orphans),
                    SweepTmpAgeSecs = OpsOptions.ParseDuration(p.GetValue(sweep) ?? "1h"),
                    UploadTtlSecs = OpsOptions.ParseDuration(p.GetValue(uploadTtl) ?? "7d"),
                };
            }
            catch (FormatException ex)
            {
                await Console.Error.WriteLineAsync($"error: {ex.Message}");
                return 2;
            }
            var sec = p.GetValue(secret) ?? Environment.GetEnvironmentVariable(ClusterAuth.EnvVar);
            var asJson = p.GetValue(json);
            try
            {
                var report = p.GetValue(coord) is string coordUrl
                    ? await RunLiveAsync(coordUrl.TrimEnd('/'), options, sec, asJson, ct)
                    : await RunOfflineAsync(p.GetValue(index) ?? throw new InvalidOperationException("give --index DIR (offline) or --coord URL (live)"), options, sec, p.GetValue(journal), asJson, ct);
                Print(report, asJson);
                return report.ExitCode;
            }
            catch (InvalidOperationException ex)
            {
                await Console.Error.WriteLineAsync($"error: {ex.Message}");
                return 2;
            }
        });
        return cmd;
    }

    /// <summary>Runs a job in this process against a stopped coordinator's index.</summary>
    public static async Task<Report> RunOfflineAsync(string indexDir, OpsOptions options, string? secret, string? journalDir, bool quiet, CancellationToken ct)
    {
        if (!Directory.Exists(indexDir) && options.Command != "rebuild")
        {
            throw new InvalidOperationException($"no index at {indexDir} (rebuild creates one)");
        }
        using var store = MetaStore.Open(indexDir);
        using var http = NodeHttp.Create(secret);
        var specs = options.Nodes.Count > 0 ? options.Nodes : store.Nodes().Select(n => $"{n.NodeId}={n.Url}").ToList();
        if (specs.Count == 0)
        {
            throw new InvalidOperationException("no volumes: pass --nodes URL,URL (the index knows none)");
        }
        var nodes = await OpsContext.ResolveNodesAsync(specs, http, ct);
        var volumes = new VolumeClient(http, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30));
        using var journal = options.DryRun || options.Command == "verify" ? null : Journal.Open(journalDir ?? Path.Combine(indexDir, "ops-journal"), options);
        using var ctx = new OpsContext(options, store, nodes, volumes, journal, Commands.NewReport(options));
        await WithProgressAsync(options.Command, ctx.Progress, quiet, () => Commands.RunAsync(ctx, ct));
        return ctx.Report;
    }

    /// <summary>Asks a running coordinator to run the job; follows its progress until it ends.</summary>
    public static async Task<Report> RunLiveAsync(string coordUrl, OpsOptions options, string? secret, bool quiet, CancellationToken ct)
    {
        using var http = NodeHttp.Create(secret, TimeSpan.FromSeconds(30));
        using var start = await http.PostAsJsonAsync($"{coordUrl}/admin/jobs", options, ct);
        if (!start.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"coordinator refused the job: {(int)start.StatusCode} {await start.Content.ReadAsStringAsync(ct)}");
        }
        var status = (await start.Content.ReadFromJsonAsync<JobStatus>(ct))!;
        var progress = new LiveProgress();
        await WithProgressAsync(options.Command, progress.State, quiet, async () =>
        {
            while (status.State == "running")
            {
                await Task.Delay(300, ct);
                status = (await http.GetFromJsonAsync<JobStatus>($"{coordUrl}/admin/jobs/{status.Id}", ct))!;
                progress.Update(status);
            }
        });
        if (status.State == "failed" || status.Report is null)
        {
            throw new InvalidOperationException($"job {status.Id} failed: {status.Error}");
        }
        return Report.FromDto(status.Report);
    }

    public static void Print(Report report, bool json)
    {
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(report, Json));
            return;
        }
        var table = new Table().Title($"{report.Command}{(report.DryRun ? " (dry run)" : "")}").AddColumn("category").AddColumn(new TableColumn("count").RightAligned());
        foreach (var (k, v) in report.Counts)
        {
            table.AddRow(report.ProblemCategories.Contains(k) && v > 0 ? $"[red]{k}[/]" : k, v.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        table.AddRow("bytes moved", report.BytesMoved.ToString(System.Globalization.CultureInfo.InvariantCulture));
        table.AddRow("duration (s)", report.DurationSecs.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture));
        if (report.ResumedKeys > 0)
        {
            table.AddRow("resumed from journal", report.ResumedKeys.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        AnsiConsole.Write(table);
        foreach (var d in report.Details.Take(50))
        {
            AnsiConsole.MarkupLineInterpolated($"  {d}");
        }
        if (report.Details.Count > 50)
        {
            AnsiConsole.MarkupLineInterpolated($"  … {report.Details.Count - 50} more (use --json for all)");
        }
        AnsiConsole.MarkupLine(report.Clean ? "[green]clean[/]" : "[red]problems found or left[/] (exit code 1)");
    }

    /// <summary>A progress bar with rate and ETA on a terminal; plain lines every 2 s otherwise.</summary>
    private static async Task WithProgressAsync(string command, ProgressState state, bool quiet, Func<Task> work)
    {
        var run = work();
        if (quiet)
        {
            await run;
            return;
        }
        if (!Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive)
        {
            await AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .StartAsync(async p =>
                {
                    var task = p.AddTask(command);
                    while (!run.IsCompleted)
                    {
                        task.Description = $"{command}: {state.Phase}";
                        task.MaxValue = Math.Max(1, state.Total);
                        task.Value = state.Done;
                        await Task.WhenAny(run, Task.Delay(200));
                    }
                    task.Value = task.MaxValue;
                });
            await run;
            return;
        }
        var sw = Stopwatch.StartNew();
        while (!run.IsCompleted)
        {
            await Task.WhenAny(run, Task.Delay(2000));
            var rate = state.Done / Math.Max(0.001, sw.Elapsed.TotalSeconds);
            var eta = rate > 0 && state.Total > state.Done ? $", ETA {(state.Total - state.Done) / rate:0}s" : "";
            await Console.Error.WriteLineAsync($"{command}: {state.Phase} {state.Done}/{state.Total} ({rate:0.0}/s{eta})");
        }
        await run;
    }

    private static List<string> SplitList(string? s) =>
        string.IsNullOrWhiteSpace(s) ? [] : s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();

    /// <summary>Mirrors a remote job's counters into a local ProgressState for display.</summary>
    private sealed class LiveProgress
    {
        public ProgressState State { get; } = new();

        public void Update(JobStatus s)
        {
            if (s.Phase != State.Phase || s.Total != State.Total)
            {
                State.Start(s.Phase, s.Total);
            }
            while (State.Done < s.Done)
            {
                State.Step();
            }
        }
    }
}
