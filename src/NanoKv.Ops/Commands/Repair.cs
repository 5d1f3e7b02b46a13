using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Ops;

/// <summary>The repair command.</summary>
public static partial class Commands
{
    /// <summary>repair: bring every committed key to N verified replicas on HRW-preferred nodes; never delete.</summary>
    private static async Task RepairAsync(OpsContext ctx, CancellationToken ct)
    {
        var r = ctx.Report;
        r.Declare("keys_checked", "repaired_keys", "copies", "corrupt_replaced", "unrecoverable", "left_under_replicated");
        var copies = await ctx.ScanAsync(ct);
        var metas = ctx.Store.Scan().Where(m => m.Meta.State == ObjectState.Committed).ToList();
        ctx.Progress.Start("repairing keys", metas.Count);
        await ctx.ForEachKeyAsync(metas, m => KeyCodec.Encode(m.Key), async (m, c) =>
        {
            var (key, meta) = m;
            var enc = KeyCodec.Encode(key);
            copies.TryGetValue(enc, out var found);
            found ??= new KeyCopies();
            r.Add("keys_checked");
            // Valid: present with the recorded size and version (and BLAKE3 with --deep), listed or not.
            var valid = new List<string>();
            var corrupt = new List<string>();
            foreach (var b in found.Blobs)
            {
                if (b.Size != meta.Size || b.Version != meta.Version)
                {
                    if (meta.Replicas.Contains(b.Node))
                    {
                        corrupt.Add(b.Node);
                    }
                    continue;
                }
                if (ctx.Options.Deep && meta.Etag.Length > 0 && await ctx.DeepEtagAsync(key, b.Node, c) != meta.Etag)
                {
                    corrupt.Add(b.Node);
                    continue;
                }
                valid.Add(b.Node);
            }
            var want = ctx.Options.Replicas ?? meta.Replicas.Count;
            var ranked = Placement.Rank(key, ctx.NodeIds);
            var listedValid = meta.Replicas.Where(valid.Contains).ToList();
            if (listedValid.Count >= want)
            {
                return;
            }
            if (valid.Count == 0)
            {
                r.Add("unrecoverable");
                r.Detail($"unrecoverable: {enc}: no valid copy on any volume");
                return;
            }
            // Refill the recorded replicas first (their copy is missing or bad), then the next HRW-preferred nodes.
            var targets = meta.Replicas.Where(n => !valid.Contains(n) && ctx.UrlOf(n) is not null)
                .Concat(ranked.Where(n => !valid.Contains(n) && !meta.Replicas.Contains(n)))
                .Take(want - listedValid.Count)
                .ToList();
            if (ctx.Options.DryRun)
            {
                foreach (var t in targets)
                {
                    r.Add("copies");
                    r.Detail($"would copy {enc} from {valid[0]} to {t}");
                }
                return;
            }
            // Sources in HRW order; the pull itself re-verifies size and BLAKE3 of what it receives.
            var sources = ranked.Where(valid.Contains).ToList();
            var replicas = new List<string>(listedValid);
            foreach (var t in targets)
            {
                if (await ctx.CopyAsync(key, meta, sources, t, c))
                {
                    replicas.Add(t);
                    r.Add("copies");
                    if (corrupt.Contains(t))
                    {
                        r.Add("corrupt_replaced");
                    }
                }
            }
            // Still short (targets failed): valid copies outside the recorded set count too.
            replicas.AddRange(valid.Where(n => !replicas.Contains(n)).Take(Math.Max(0, want - replicas.Count)));
            replicas = ranked.Where(replicas.Contains).ToList();
            if (!replicas.SequenceEqual(meta.Replicas) && await ctx.Store.UpdateIfUnchangedAsync(key, meta, meta with { Replicas = replicas, UpdatedMs = Now() }))
            {
                r.Add("repaired_keys");
            }
            else if (replicas.Count > listedValid.Count)
            {
                r.Add("repaired_keys");
            }
            if (replicas.Count < want)
            {
                r.Add("left_under_replicated");
                r.Detail($"left under-replicated: {enc}: {replicas.Count}/{want}");
            }
        }, ct);
    }
}
