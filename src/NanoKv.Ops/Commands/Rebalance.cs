using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Ops;

/// <summary>The rebalance command.</summary>
public static partial class Commands
{
    /// <summary>
    /// rebalance: move each key to its current HRW target set. Copy (verified) → update metadata → delete
    /// the old copies, in that order; old copies are deleted only after every move, so readers that were
    /// redirected to them just before the switch still find them.
    /// </summary>
    private static async Task RebalanceAsync(OpsContext ctx, CancellationToken ct)
    {
        var r = ctx.Report;
        r.Declare("keys_checked", "in_place", "moved_keys", "copies", "deleted_old_copies", "failed_moves");
        var copies = await ctx.ScanAsync(ct);
        var metas = ctx.Store.Scan().Where(m => m.Meta.State == ObjectState.Committed).ToList();
        ctx.Progress.Start("rebalancing keys", metas.Count);
        await ctx.ForEachKeyAsync(metas, m => KeyCodec.Encode(m.Key), async (m, c) =>
        {
            var (key, meta) = m;
            r.Add("keys_checked");
            var n = ctx.Options.Replicas ?? meta.Replicas.Count;
            var target = Placement.Choose(key, ctx.NodeIds, n);
            if (target.Order(StringComparer.Ordinal).SequenceEqual(meta.Replicas.Order(StringComparer.Ordinal)))
            {
                r.Add("in_place");
                return;
            }
            copies.TryGetValue(KeyCodec.Encode(key), out var found);
            found ??= new KeyCopies();
            var have = found.Blobs.Where(b => b.Size == meta.Size && b.Version == meta.Version).Select(b => b.Node).ToList();
            var sources = meta.Replicas.Where(have.Contains).ToList();
            if (sources.Count == 0)
            {
                r.Add("failed_moves");
                r.Detail($"{KeyCodec.Encode(key)}: no valid copy to move from");
                return;
            }
            var missing = target.Where(t => !have.Contains(t)).ToList();
            if (ctx.Options.DryRun)
            {
                foreach (var t in missing)
                {
                    r.Add("copies");
                    r.Detail($"would copy {KeyCodec.Encode(key)} from {sources[0]} to {t}");
                }
                r.Add("moved_keys");
                return;
            }
            foreach (var t in missing)
            {
                if (!await ctx.CopyAsync(key, meta, sources, t, c))
                {
                    r.Add("failed_moves");
                    return; // metadata untouched: the old replicas still serve the key
                }
                r.Add("copies");
            }
            if (await ctx.Store.UpdateIfUnchangedAsync(key, meta, meta with { Replicas = target, UpdatedMs = Now() }))
            {
                r.Add("moved_keys");
            }
        }, ct);
        if (ctx.Options.DryRun)
        {
            return;
        }
        // Old copies: any copy of a committed key on a node outside its (new) replica set, once that set is complete.
        ctx.Progress.Start("deleting old copies", metas.Count);
        var rescan = await ctx.ScanAsync(ct);
        foreach (var (key, _) in metas)
        {
            var meta = ctx.Store.Get(key);
            if (meta?.State != ObjectState.Committed || !rescan.TryGetValue(KeyCodec.Encode(key), out var found))
            {
                continue;
            }
            var complete = meta.Replicas.All(n => found.BlobOn(n) is { } b && b.Size == meta.Size && b.Version == meta.Version);
            if (!complete)
            {
                continue;
            }
            foreach (var old in found.Blobs.Where(b => !meta.Replicas.Contains(b.Node)))
            {
                await DeleteCopyAsync(ctx, key, old.Node, old.Version, tombstone: false, "deleted_old_copies", ct);
            }
        }
    }
}
