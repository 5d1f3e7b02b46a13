using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using NanoKv.Core;
using NanoKv.Metadata;
using NanoKv.Ops;

namespace NanoKv.Coordinator;

/// <summary>
/// Ops commands run by a live coordinator (`coord verify --coord URL`): the job uses the coordinator's own
/// index and node registry, so reads and writes keep being served, and metadata updates take the same
/// per-key locks as PUT/DELETE. Jobs that change anything hold the cluster-wide <see cref="ClusterJobLease"/>:
/// a second one (here or on another coordinator) is refused with 409 naming the holder.
/// </summary>
public sealed class OpsJobs(IMetaStore store, NodeRegistry nodes, HttpClient http, string journalDir, ClusterJobLease lease, ILogger logger)
{
    private readonly ConcurrentDictionary<string, Job> _jobs = new();

    public void Map(WebApplication app)
    {
        app.MapPost("/admin/jobs", async Task<IResult> (HttpContext ctx) =>
        {
            OpsOptions? options;
            try
            {
                options = await ctx.Request.ReadFromJsonAsync<OpsOptions>(ctx.RequestAborted);
            }
            catch (System.Text.Json.JsonException ex)
            {
                return ApiError.BadRequest(ApiError.Codes.InvalidArgument, ex.Message);
            }
            if (options is null || !NanoKv.Ops.Commands.Names.Contains(options.Command))
            {
                return ApiError.BadRequest(ApiError.Codes.InvalidArgument, $"command must be one of {string.Join(", ", NanoKv.Ops.Commands.Names)}");
            }
            var id = Guid.NewGuid().ToString("N")[..12];
            JobLeaseRecord? held = null;
            if (!options.DryRun && options.Command != "verify")
            {
                var (mine, holder) = lease.TryAcquire(id, options.Command);
                if (mine is null)
                {
                    return ApiError.Result(409, ApiError.Codes.JobRunning, ClusterJobLease.Describe(holder!));
                }
                held = mine;
            }
            Job job;
            try
            {
                job = await StartAsync(id, options, held);
            }
            catch when (held is not null)
            {
                await lease.HoldAsync(held, Task.CompletedTask); // releases it
                throw;
            }
            return Results.Json(job.Status(), statusCode: 202);
        });
        app.MapGet("/admin/jobs/{id}", (string id) =>
            _jobs.TryGetValue(id, out var job) ? Results.Json(job.Status()) : ApiError.NotFoundResult($"no job {id}"));
        app.MapGet("/admin/jobs", () => Results.Json(_jobs.Values.Select(j => j.Status())));
    }

    /// <summary>Every job since start, oldest first (for the metrics gauges).</summary>
    public IReadOnlyList<JobStatus> Statuses() => [.. _jobs.Values.OrderBy(j => j.Started).Select(j => j.Status())];

    private async Task<Job> StartAsync(string id, OpsOptions options, JobLeaseRecord? held)
    {
        var specs = options.Nodes.Count > 0
            ? options.Nodes
            : nodes.AliveIds().Select(id => $"{id}={nodes.UrlOf(id)}").ToList();
        var resolved = await OpsContext.ResolveNodesAsync(specs, http, CancellationToken.None);
        var journal = options.DryRun || options.Command == "verify" ? null : Journal.Open(journalDir, options);
        var volumes = new VolumeClient(http, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30));
        var ctx = new OpsContext(options, store, resolved, volumes, journal, NanoKv.Ops.Commands.NewReport(options));
        var job = new Job(id, ctx);
        var run = Task.Run(async () =>
        {
            try
            {
                await NanoKv.Ops.Commands.RunAsync(ctx, CancellationToken.None);
            }
            catch (Exception ex)
            {
                job.Error = ex.Message;
                logger.LogError(ex, "ops job {Id} ({Command}) failed", job.Id, options.Command);
            }
            finally
            {
                ctx.Dispose();
            }
        });
        // The job reads as ended only once its cluster-wide lease is released, so a caller that saw it end may
        // start the next one at once.
        job.Run = held is null ? run : HoldThenAwaitAsync(held, run);
        _jobs[job.Id] = job;
        return job;
    }

    private async Task HoldThenAwaitAsync(JobLeaseRecord held, Task run)
    {
        await lease.HoldAsync(held, run);
        await run;
    }

    private sealed class Job(string id, OpsContext ctx)
    {
        public string Id { get; } = id;

        public DateTimeOffset Started { get; } = DateTimeOffset.UtcNow;

        public Task Run { get; set; } = Task.CompletedTask;

        public string? Error { get; set; }

        public JobStatus Status()
        {
            var r = ctx.Report;
            var state = !Run.IsCompleted ? "running" : Error is null ? "done" : "failed";
            var report = state == "done"
                ? new ReportDto(r.Command, r.DryRun, new Dictionary<string, long>(r.Counts), r.BytesMoved, r.DurationSecs, r.ResumedKeys, r.Details, r.ProblemCategories)
                : null;
            return new JobStatus(Id, ctx.Options.Command, state, ctx.Progress.Phase, ctx.Progress.Done, ctx.Progress.Total, report, Error);
        }
    }
}
