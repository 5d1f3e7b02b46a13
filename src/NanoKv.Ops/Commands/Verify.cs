using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Ops;

/// <summary>The verify command.</summary>
public static partial class Commands
{
    /// <summary>verify: read-only audit of replicas against metadata.</summary>
    private static async Task VerifyAsync(OpsContext ctx, CancellationToken ct)
    {
        var r = ctx.Report;
        r.Declare("keys_checked", "under_replicated", "corrupted", "unindexed", "should_gc", "extraneous", "pending");
        var copies = await ctx.ScanAsync(ct);
        var metas = ctx.Store.Scan().ToList();
        var indexed = new HashSet<string>(StringComparer.Ordinal);
        ctx.Progress.Start("verifying keys", metas.Count);
        await ctx.ForEachKeyAsync(metas, m => KeyCodec.Encode(m.Key), async (m, c) =>
        {
            var (key, meta) = m;
            var enc = KeyCodec.Encode(key);
            lock (indexed)
            {
                indexed.Add(enc);
            }
            copies.TryGetValue(enc, out var found);
            found ??= new KeyCopies();
            r.Add("keys_checked");
            switch (meta.State)
            {
                case ObjectState.Committed:
                    // Missing copies make a key under-replicated; present but wrong copies are "corrupted".
                    var present = 0;
                    foreach (var node in meta.Replicas)
                    {
                        if (found.BlobOn(node) is not { } blob)
                        {
                            continue;
                        }
                        present++;
                        if (blob.Size != meta.Size)
                        {
                            r.Add("corrupted");
                            r.Detail($"corrupted: {enc} on {node}: {blob.Size} bytes, expected {meta.Size}");
                            continue;
                        }
                        if (ctx.Options.Deep && meta.Etag.Length > 0 && await ctx.DeepEtagAsync(key, node, c) is string etag && etag != meta.Etag)
                        {
                            r.Add("corrupted");
                            r.Detail($"corrupted: {enc} on {node}: etag {etag}, expected {meta.Etag}");
                        }
                    }
                    var want = ctx.Options.Replicas ?? meta.Replicas.Count;
                    if (present < want)
                    {
                        r.Add("under_replicated");
                        r.Detail($"under-replicated: {enc}: {present}/{want} replicas present");
                    }
                    r.Add("extraneous", found.Blobs.Count(b => !meta.Replicas.Contains(b.Node)));
                    break;
                case ObjectState.Tombstoned:
                    foreach (var b in found.Blobs.Where(b => b.Version <= meta.Version))
                    {
                        r.Add("should_gc");
                        r.Detail($"should-gc: {enc} on {b.Node} (deleted)");
                    }
                    break;
                default:
                    r.Add("pending");
                    break;
            }
        }, ct);
        foreach (var (enc, found) in copies)
        {
            if (!indexed.Contains(enc))
            {
                foreach (var b in found.Blobs)
                {
                    r.Add("unindexed");
                    r.Detail($"unindexed: {enc} on {b.Node} ({b.Size} bytes)");
                }
            }
        }
        VerifyS3(ctx);
    }
}
