using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Coordinator.Core;

/// <summary>
/// Leases of pending writes. A PUT's pending record names its coordinator (Owner) and carries a lease
/// (LeaseUntilMs), renewed while the PUT runs. Every coordinator sweeps the pending index periodically and
/// resolves the writes whose lease lapsed (their coordinator died) — and, after a restart, its own. The claim
/// is a compare-and-swap that moves the lease, and every later transition compares the claimed lease, so two
/// sweepers (or a sweeper and a slow owner) never both act on one write.
/// </summary>
public sealed partial class ObjectStore
{
    /// <summary>This process's PUTs between reservation and their final swap, by upload id.</summary>
    private readonly ConcurrentDictionary<string, PendingWrite> _inFlight = new(StringComparer.Ordinal);

    private static long NowMs => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    /// <summary>The meta owned by this coordinator with a fresh lease, strictly later than its current one (a renewal must change what the swap compares).</summary>
    private ObjectMeta Leased(ObjectMeta m) =>
        m with { Owner = settings.CoordinatorId, LeaseUntilMs = Math.Max(NowMs + (long)settings.PendingLease.TotalMilliseconds, m.LeaseUntilMs + 1) };

    private void Track(PendingWrite write) => _inFlight[write.Meta.UploadId] = write;

    private void Forget(PendingWrite write) => _inFlight.TryRemove(write.Meta.UploadId, out _);

    private static StoreError LeaseLapsed(byte[] key) => new(
        StoreErrorKind.ReplicaFailed,
        $"the lease of this write of {KeyCodec.Display(key)} lapsed and another coordinator resolved the write; retry the PUT");

    /// <summary>May this coordinator resolve the pending write now? Its lease lapsed, or it is this coordinator's own leftover (no PUT of this process runs it).</summary>
    private bool Resolvable(ObjectMeta m) =>
        !_inFlight.ContainsKey(m.UploadId) && (m.Owner == settings.CoordinatorId || m.LeaseUntilMs <= NowMs);

    /// <summary>Renews the leases of this process's PUTs that are past a third of their lease, until cancelled.</summary>
    public async Task RenewLeasesLoopAsync(CancellationToken ct)
    {
        var every = TimeSpan.FromMilliseconds(Math.Max(50, settings.PendingLease.TotalMilliseconds / 6));
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(every, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            foreach (var write in _inFlight.Values)
            {
                try
                {
                    if (write.RenewIfDue() == false)
                    {
                        logger.LogWarning("lost the lease of the pending write of {Key}: another coordinator resolves it", KeyCodec.Display(write.Key));
                    }
                }
                catch (MetaStoreUnavailableException ex)
                {
                    logger.LogWarning("could not renew the lease of {Key}: {Error}", KeyCodec.Display(write.Key), ex.Message);
                }
            }
        }
    }

    /// <summary>
    /// Resolves pending writes this coordinator may resolve (<see cref="Resolvable"/>) every
    /// <see cref="DataPathSettings.SweepInterval"/>, until cancelled. The first pass runs at once: at start
    /// it finishes this coordinator's own writes interrupted by a crash (the single-coordinator recovery).
    /// </summary>
    public async Task SweepPendingLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await SweepPendingOnceAsync(ct);
                await Task.Delay(settings.SweepInterval, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (Exception ex)
            {
                logger.LogWarning("sweeping pending writes failed: {Error}", ex.Message);
                try
                {
                    await Task.Delay(settings.SweepInterval, ct);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>One pass over the pending index; returns how many writes it claimed and resolved.</summary>
    public async Task<int> SweepPendingOnceAsync(CancellationToken ct)
    {
        var resolved = 0;
        foreach (var key in store.PendingKeys())
        {
            ct.ThrowIfCancellationRequested();
            var meta = store.Get(key);
            if (meta is not { State: ObjectState.Pending } || !Resolvable(meta))
            {
                continue;
            }
            var claimed = Leased(meta);
            if (!store.CompareAndSwap(key, meta, claimed))
            {
                continue; // its owner renewed it or another sweeper claimed it first
            }
            if (meta.Owner != settings.CoordinatorId)
            {
                logger.LogInformation(
                    "claimed the pending write of {Key} from {Owner} (lease lapsed {Ms} ms ago)",
                    KeyCodec.Display(key),
                    meta.Owner.Length == 0 ? "an unknown coordinator" : meta.Owner,
                    NowMs - meta.LeaseUntilMs);
            }
            var giveUp = NowMs - meta.CreatedMs > settings.RecoveryGiveUp.TotalMilliseconds;
            if (await TryRecoverAsync(key, claimed, giveUp, ct))
            {
                resolved++;
            }
        }
        return resolved;
    }

    /// <summary>The lease side of a reserved write: every change of its pending record is a swap against the latest lease.</summary>
    private sealed partial class PendingWrite
    {
        private readonly Lock _gate = new();
        private bool _renewing = true;

        /// <summary>True once a swap found the record changed: another coordinator claimed the write.</summary>
        public bool LeaseLost { get; private set; }

        /// <summary>Replaces the pending record with next (and a fresh lease) if it is still this write's; false when the lease was lost.</summary>
        public bool TrySwap(ObjectMeta next, bool sync = true)
        {
            lock (_gate)
            {
                return SwapLocked(next, sync);
            }
        }

        /// <summary>Renews the lease when a third of it is spent; null when not due, false when it was lost.</summary>
        public bool? RenewIfDue()
        {
            lock (_gate)
            {
                var left = Meta.LeaseUntilMs - NowMs;
                if (!_renewing || LeaseLost || left > owner.Settings.PendingLease.TotalMilliseconds * 2 / 3)
                {
                    return null;
                }
                return SwapLocked(Meta, true);
            }
        }

        /// <summary>Stops renewing and returns the record as it now stands (the final swap compares its lease).</summary>
        public ObjectMeta StopRenewing()
        {
            lock (_gate)
            {
                _renewing = false;
                return Meta;
            }
        }

        private bool SwapLocked(ObjectMeta next, bool sync)
        {
            var leased = owner.Leased(next);
            if (LeaseLost || !owner.Meta.CompareAndSwap(Key, Meta, leased, sync))
            {
                LeaseLost = true;
                return false;
            }
            Meta = leased;
            return true;
        }
    }
}
