using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Ops;

/// <summary>The five ops commands. Each reads the index and the volumes, then acts key by key.</summary>
public static partial class Commands
{
    public static readonly string[] Names = ["rebuild", "verify", "repair", "gc", "rebalance"];

    public static Report NewReport(OpsOptions o) => o.Command switch
    {
        "verify" => new Report("verify", o.DryRun, "under_replicated", "corrupted", "unindexed", "should_gc", "unreachable_nodes", "errors"),
        "repair" => new Report("repair", o.DryRun, "unrecoverable", "left_under_replicated", "unreachable_nodes", "errors"),
        "gc" => new Report("gc", o.DryRun, "failed_deletes", "unreachable_nodes", "errors"),
        "rebuild" => new Report("rebuild", o.DryRun, "conflicts", "s3_manifests_incomplete", "unreachable_nodes", "errors"),
        "rebalance" => new Report("rebalance", o.DryRun, "failed_moves", "unreachable_nodes", "errors"),
        _ => throw new ArgumentException($"unknown ops command '{o.Command}' (one of: {string.Join(", ", Names)})"),
    };

    public static async Task RunAsync(OpsContext ctx, CancellationToken ct)
    {
        var started = DateTime.UtcNow;
        ctx.Report.ResumedKeys = ctx.Journal?.Resumed ?? 0;
        var job = ctx.Options.Command switch
        {
            "verify" => VerifyAsync(ctx, ct),
            "repair" => RepairAsync(ctx, ct),
            "gc" => GcAsync(ctx, ct),
            "rebuild" => RebuildAsync(ctx, ct),
            "rebalance" => RebalanceAsync(ctx, ct),
            _ => throw new ArgumentException($"unknown ops command '{ctx.Options.Command}'"),
        };
        await job;
        ctx.Report.DurationSecs = Math.Round((DateTime.UtcNow - started).TotalSeconds, 3);
        if (!ctx.Options.DryRun)
        {
            ctx.Journal?.Complete();
        }
        ctx.Progress.Phase = "done";
    }

    private static long Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
}
