using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Ops;

/// <summary>The rebuild command.</summary>
public static partial class Commands
{
    /// <summary>rebuild: recreate missing metadata from what the volumes hold; never resurrect a delete.</summary>
    private static async Task RebuildAsync(OpsContext ctx, CancellationToken ct)
    {
        var r = ctx.Report;
        r.Declare("keys_seen", "restored", "tombstones_restored", "kept_tombstones", "already_indexed", "conflicts", "stale_copies");
        var copies = await ctx.ScanAsync(ct);
        var keys = copies.Keys.Order(StringComparer.Ordinal).ToList();
        ctx.Progress.Start("rebuilding index", keys.Count);
        await ctx.ForEachKeyAsync(keys, k => k, async (enc, c) =>
        {
            var key = OpsContext.KeyBytes(enc);
            var found = copies[enc];
            r.Add("keys_seen");
            var existing = ctx.Store.Get(key);
            if (existing is not null)
            {
                r.Add(existing.State == ObjectState.Tombstoned ? "kept_tombstones" : "already_indexed");
                return;
            }
            var deletedAt = found.Tombs.Count == 0 ? 0 : found.Tombs.Max(t => t.Version);
            var live = found.Blobs.Where(b => b.Version > deletedAt).ToList();
            ObjectMeta meta;
            if (live.Count == 0)
            {
                // Only deleted data: bring the tombstone back so gc can finish and nothing resurrects.
                meta = new ObjectMeta
                {
                    State = ObjectState.Tombstoned,
                    Version = deletedAt,
                    Replicas = found.Blobs.Select(b => b.Node).Distinct().ToList(),
                    UploadId = "rebuild",
                    CreatedMs = deletedAt / 1000,
                    UpdatedMs = deletedAt / 1000,
                };
                await WriteIfAbsentAsync(ctx, key, meta, "tombstones_restored");
                return;
            }
            var newest = live.Max(b => b.Version);
            var current = live.Where(b => b.Version == newest).ToList();
            r.Add("stale_copies", found.Blobs.Count - current.Count);
            if (current.Select(b => b.Size).Distinct().Count() > 1)
            {
                r.Add("conflicts");
                r.Detail($"conflict: {enc}: copies of version {newest} have sizes {string.Join(", ", current.Select(b => $"{b.Node}={b.Size}"))}");
                return;
            }
            var etags = new List<string?>();
            foreach (var b in current)
            {
                var url = ctx.UrlOf(b.Node)!;
                var info = await ctx.OnNodeAsync(b.Node, () => ctx.Volumes.BlobInfoAsync(url, key, ctx.Options.Deep, c));
                var bi = info.Ok ? info.As<BlobInfo>() : null;
                etags.Add(ctx.Options.Deep ? bi?.Etag : bi?.StoredEtag);
            }
            var known = etags.Where(e => !string.IsNullOrEmpty(e)).Distinct().ToList();
            if (known.Count > 1)
            {
                r.Add("conflicts");
                r.Detail($"conflict: {enc}: copies of version {newest} disagree on BLAKE3 ({string.Join(", ", known)})");
                return;
            }
            meta = new ObjectMeta
            {
                State = ObjectState.Committed,
                Size = current[0].Size,
                Etag = known.FirstOrDefault() ?? "",
                Replicas = Placement.Rank(key, current.Select(b => b.Node)),
                UploadId = "rebuild",
                Version = newest,
                CreatedMs = newest / 1000,
                UpdatedMs = Now(),
            };
            await WriteIfAbsentAsync(ctx, key, meta, "restored");
        }, ct);
        await RebuildS3Async(ctx, ct);
    }

    private static async Task WriteIfAbsentAsync(OpsContext ctx, byte[] key, ObjectMeta meta, string category)
    {
        if (ctx.Options.DryRun)
        {
            ctx.Report.Add(category);
            ctx.Report.Detail($"would write {meta.State} metadata for {KeyCodec.Encode(key)}");
            return;
        }
        using (await ctx.Store.LockAsync(key))
        {
            if (ctx.Store.Get(key) is not null)
            {
                ctx.Report.Add("already_indexed");
                return;
            }
            ctx.Store.Put(key, meta);
        }
        ctx.Report.Add(category);
    }
}
