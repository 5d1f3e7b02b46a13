using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Ops;

/// <summary>The five ops commands. Each reads the index and the volumes, then acts key by key.</summary>
public static class Commands
{
    public static readonly string[] Names = ["rebuild", "verify", "repair", "gc", "rebalance"];

    public static Report NewReport(OpsOptions o) => o.Command switch
    {
        "verify" => new Report("verify", o.DryRun, "under_replicated", "corrupted", "unindexed", "should_gc", "unreachable_nodes", "errors"),
        "repair" => new Report("repair", o.DryRun, "unrecoverable", "left_under_replicated", "unreachable_nodes", "errors"),
        "gc" => new Report("gc", o.DryRun, "failed_deletes", "unreachable_nodes", "errors"),
        "rebuild" => new Report("rebuild", o.DryRun, "conflicts", "unreachable_nodes", "errors"),
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
    }

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

    private static long Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
}
