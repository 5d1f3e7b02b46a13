using Microsoft.Extensions.Logging;
using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Coordinator.Core;

/// <summary>What happens after a failure: deletes owed to replicas that missed them, pending writes left by a crash, rollback.</summary>
public sealed partial class ObjectStore
{
    /// <summary>Re-sends deletes that missed a replica, once every replica of the key is alive again.</summary>
    public async Task FinishOwedDeletesAsync(CancellationToken ct)
    {
        foreach (var key in store.OwedDeleteKeys())
        {
            var meta = store.Get(key);
            if (meta is not { State: ObjectState.Tombstoned })
            {
                store.ClearDeleteOwed(key); // written again since: the old delete is moot
                continue;
            }
            if (meta.Replicas.Any(id => nodes.StatusOf(id) != NodeStatus.Alive || nodes.UrlOf(id) is null))
            {
                continue;
            }
            var results = await Task.WhenAll(meta.Replicas.Select(id => volumes.DeleteAsync(nodes.UrlOf(id)!, key, meta.Version, ct)));
            if (results.All(r => r.Ok))
            {
                store.ClearDeleteOwed(key);
                logger.LogInformation("finished the delete of {Key} on every replica", KeyCodec.Display(key));
            }
        }
    }

    /// <summary>
    /// Sends deletes (volume tombstones) to the replicas; the ones it misses are owed (<see cref="FinishOwedDeletesAsync"/>).
    /// If none of them could record it, the tombstone is written to other live nodes too, so a rebuild from
    /// volumes still sees the delete.
    /// </summary>
    private async Task FanOutDeleteAsync(byte[] key, IReadOnlyList<string> replicas, long version)
    {
        // Down nodes are skipped rather than retried for the whole time box: FinishOwedDeletesAsync does it later.
        var results = await Task.WhenAll(replicas.Select(id => nodes.UrlOf(id) is string url && nodes.StatusOf(id) != NodeStatus.Down
            ? volumes.DeleteAsync(url, key, version, CancellationToken.None)
            : Task.FromResult(new CallResult(false, 0, "node down or unknown", false))));
        var ok = results.Count(r => r.Ok);
        if (ok == 0)
        {
            var others = nodes.AliveIds().Except(replicas).Take(Math.Max(1, replicas.Count));
            await Task.WhenAll(others.Select(id => volumes.DeleteAsync(nodes.UrlOf(id)!, key, version, CancellationToken.None)));
        }
        if (ok < replicas.Count)
        {
            store.MarkDeleteOwed(key);
            logger.LogWarning("delete of {Key} reached {Ok}/{N} replicas; retried when they are back", KeyCodec.Display(key), ok, replicas.Count);
        }
    }

    /// <summary>
    /// Resolves one pending write this coordinator has claimed (<see cref="SweepPendingOnceAsync"/>): roll
    /// forward when every replica committed it with the recorded BLAKE3, otherwise roll back. False when a
    /// replica cannot be reached yet (the sweeper retries until giveUp). Every change compares the claimed meta.
    /// </summary>
    private async Task<bool> TryRecoverAsync(byte[] key, ObjectMeta meta, bool giveUp, CancellationToken ct)
    {
        var states = new Dictionary<string, string>();
        foreach (var id in meta.Replicas)
        {
            var url = nodes.UrlOf(id);
            var r = url is null ? null : await volumes.UploadStatusAsync(url, meta.UploadId, ct);
            var status = r is { Ok: true } ? r.As<UploadStatus>() : null;
            var state = r is { Ok: true } ? status?.State ?? "unknown" : "unreachable";
            if (state == "committed" && !SameHash(status?.Etag, meta.Etag))
            {
                state = "wrong-hash";
            }
            if (state == "unknown" && url is not null)
            {
                // The commit marker is not fsync'd; the blob stamped with this write's version (and hash) is the durable proof.
                var info = await volumes.BlobInfoAsync(url, key, false, ct);
                if (info.Ok && info.As<BlobInfo>() is { Exists: true } b && b.Version == meta.Version && b.Size == meta.Size && SameHash(b.StoredEtag ?? b.Etag, meta.Etag))
                {
                    state = "committed";
                }
            }
            states[id] = state;
        }
        if (states.Values.Contains("unreachable") && !giveUp)
        {
            return false;
        }
        var committedOn = states.Where(s => s.Value == "committed").Select(s => s.Key).ToList();
        if (committedOn.Count == meta.Replicas.Count && meta.Etag.Length > 0)
        {
            if (store.CompareAndSwap(key, meta, meta with { State = ObjectState.Committed, UpdatedMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Owner = "", LeaseUntilMs = 0 }))
            {
                logger.LogInformation("recovered pending {Key}: rolled forward", KeyCodec.Display(key));
            }
            return true;
        }
        await RollBackAsync(key, meta, committedOn, meta.Replicas.Except(committedOn).ToList());
        logger.LogInformation("recovered pending {Key}: rolled back ({States})", KeyCodec.Display(key), string.Join(", ", states.Select(s => $"{s.Key}={s.Value}")));
        return true;
    }

    /// <summary>A volume's recorded BLAKE3 matches the write's (a volume that reports none is judged by version and size).</summary>
    private static bool SameHash(string? stored, string recorded) => string.IsNullOrEmpty(stored) || stored == recorded;

    /// <summary>
    /// Undoes a partially committed write: abort where it did not commit, tombstone the key and delete it
    /// wherever it did — or may have: a replica whose abort fails (unreachable, or "already committed"
    /// because its commit answer was lost) is treated as committed. Deletes that miss a replica are owed.
    /// </summary>
    private async Task RollBackAsync(byte[] key, ObjectMeta pending, List<string> committedOn, List<string> others)
    {
        Metrics.Rollbacks.Inc();
        var aborts = await Task.WhenAll(others.Select(id => nodes.UrlOf(id) is string url
            ? volumes.AbortAsync(url, pending.UploadId, CancellationToken.None, key, pending.Version)
            : Task.FromResult(new CallResult(false, 0, "unknown node", false))));
        var holders = committedOn.Concat(others.Where((_, i) => !aborts[i].Ok)).ToList();
        if (holders.Count == 0)
        {
            store.CompareAndSwap(key, pending, null);
            return;
        }
        logger.LogWarning("rolling back {Key}: deleting it on {Holders}", KeyCodec.Display(key), string.Join(", ", holders));
        var version = clock.Next();
        // Only the coordinator whose swap succeeds fans the deletes out; another one resolved it otherwise.
        if (store.CompareAndSwap(key, pending, pending with { State = ObjectState.Tombstoned, Version = version, Replicas = holders, UpdatedMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Owner = "", LeaseUntilMs = 0 }))
        {
            await FanOutDeleteAsync(key, holders, version);
        }
    }
}
