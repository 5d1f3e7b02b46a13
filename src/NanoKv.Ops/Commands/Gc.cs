using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Ops;

/// <summary>The gc command.</summary>
public static partial class Commands
{
    /// <summary>gc: expire old tombstones, sweep temp files, optionally drop extra and orphan copies.</summary>
    private static async Task GcAsync(OpsContext ctx, CancellationToken ct)
    {
        var r = ctx.Report;
        r.Declare("tombstones_expired", "tombstones_kept", "deleted_files", "tombstones_purged", "tmp_files_removed", "extraneous_deleted", "orphans_deleted", "kept_last_copy", "failed_deletes");
        var copies = await ctx.ScanAsync(ct);
        var metas = ctx.Store.Scan().ToList();
        var indexed = new HashSet<string>(metas.Select(m => KeyCodec.Encode(m.Key)), StringComparer.Ordinal);
        var cutoff = Now() - (ctx.Options.TombstoneTtlSecs * 1000);
        ctx.Progress.Start("collecting garbage", metas.Count);
        await ctx.ForEachKeyAsync(metas, m => KeyCodec.Encode(m.Key), async (m, c) =>
        {
            var (key, meta) = m;
            var enc = KeyCodec.Encode(key);
            copies.TryGetValue(enc, out var found);
            found ??= new KeyCopies();
            if (meta.State == ObjectState.Tombstoned)
            {
                if (meta.UpdatedMs > cutoff)
                {
                    r.Add("tombstones_kept");
                    return;
                }
                r.Add("tombstones_expired");
                var holders = found.Blobs.Where(b => b.Version <= meta.Version).Select(b => b.Node).Union(meta.Replicas).Distinct().ToList();
                var ok = true;
                foreach (var node in holders)
                {
                    if (found.BlobOn(node) is null)
                    {
                        continue; // nothing there to delete
                    }
                    ok &= await DeleteCopyAsync(ctx, key, node, meta.Version, tombstone: true, "deleted_files", c);
                }
                if (ok && ctx.Options.PurgeTombstoneMeta)
                {
                    if (ctx.Options.DryRun)
                    {
                        r.Detail($"would purge tombstone metadata of {enc}");
                    }
                    else if (await ctx.Store.UpdateIfUnchangedAsync(key, meta, null))
                    {
                        r.Add("tombstones_purged");
                    }
                }
                return;
            }
            if (meta.State == ObjectState.Committed && ctx.Options.DeleteExtraneous)
            {
                var validListed = meta.Replicas.Count(n => found.BlobOn(n) is { } b && b.Size == meta.Size && b.Version == meta.Version);
                foreach (var extra in found.Blobs.Where(b => !meta.Replicas.Contains(b.Node)))
                {
                    // Never the last valid copy: extras go only when every listed replica is in place.
                    if (validListed < Math.Max(1, meta.Replicas.Count))
                    {
                        r.Add("kept_last_copy");
                        continue;
                    }
                    await DeleteCopyAsync(ctx, key, extra.Node, extra.Version, tombstone: false, "extraneous_deleted", c);
                }
            }
        }, ct);
        if (ctx.Options.PurgeOrphans)
        {
            foreach (var (enc, found) in copies.Where(kv => !indexed.Contains(kv.Key)))
            {
                foreach (var b in found.Blobs)
                {
                    await DeleteCopyAsync(ctx, OpsContext.KeyBytes(enc), b.Node, b.Version, tombstone: false, "orphans_deleted", ct);
                }
            }
        }
        await GcS3Async(ctx, ct);
        ctx.Progress.Start("sweeping temp files", ctx.Nodes.Count);
        foreach (var node in ctx.Nodes)
        {
            if (ctx.Options.DryRun)
            {
                r.Detail($"would sweep tmp/ files older than {ctx.Options.SweepTmpAgeSecs}s on {node.Id}");
            }
            else
            {
                var sweep = await ctx.Volumes.SweepTmpAsync(node.Url, ctx.Options.SweepTmpAgeSecs, ct);
                if (sweep.Ok)
                {
                    r.Add("tmp_files_removed", System.Text.Json.JsonDocument.Parse(sweep.Body).RootElement.GetProperty("removed_files").GetInt64());
                }
            }
            ctx.Progress.Step();
        }
    }

    private static async Task<bool> DeleteCopyAsync(OpsContext ctx, byte[] key, string node, long version, bool tombstone, string category, CancellationToken ct)
    {
        if (ctx.Options.DryRun)
        {
            ctx.Report.Add(category);
            ctx.Report.Detail($"would delete {KeyCodec.Encode(key)} on {node}");
            return true;
        }
        var url = ctx.UrlOf(node);
        var res = url is null ? null : await ctx.OnNodeAsync(node, () => ctx.Volumes.DeleteAsync(url, key, version, ct, tombstone));
        if (res is { Ok: true })
        {
            ctx.Report.Add(category);
            return true;
        }
        ctx.Report.Add("failed_deletes");
        ctx.Report.Detail($"delete of {KeyCodec.Encode(key)} on {node} failed: {res?.Describe() ?? "unknown node"}");
        return false;
    }
}
