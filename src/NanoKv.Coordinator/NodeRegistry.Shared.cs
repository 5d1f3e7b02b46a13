using Microsoft.Extensions.Logging;
using NanoKv.Metadata;

namespace NanoKv.Coordinator;

/// <summary>
/// Shared node verdicts (several coordinators on one metadata database): each node has one record holding
/// the freshest observation any coordinator made of it (alive/suspect/down, when, by whom). A coordinator
/// publishes its own observation when it is newer and differs from the record (or to refresh it), reads the
/// records back, learns nodes that joined through another coordinator, and adopts a verdict observed more
/// recently than its own (<see cref="Node.Status"/>). So a volume that heartbeats to A only is alive for B,
/// and a volume A saw die is down for B within one sync interval. RocksDB (one coordinator) skips all this.
/// </summary>
public sealed partial class NodeRegistry
{
    /// <summary>This coordinator's id: the author of the verdicts it publishes.</summary>
    public string CoordinatorId { get; set; } = "";

    /// <summary>How often verdicts are exchanged through the metadata: often enough that an alive verdict never ages into suspect.</summary>
    public TimeSpan SyncInterval => TimeSpan.FromMilliseconds(Math.Min(settings.ProbeInterval.TotalMilliseconds, settings.SuspectAfter.TotalMilliseconds / 3));

    /// <summary>Publishes and adopts verdicts every <see cref="SyncInterval"/> until cancelled.</summary>
    public async Task SyncVerdictsLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                SyncVerdicts();
                await Task.Delay(SyncInterval, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (Exception ex) // any failure: log it and retry next interval; a dead loop would silently freeze verdicts
            {
                logger.LogWarning("node verdicts not exchanged: {Error}", ex.Message);
                try
                {
                    await Task.Delay(SyncInterval, ct);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>One exchange: read every node's record, then publish this coordinator's newer observations.</summary>
    public void SyncVerdicts()
    {
        foreach (var record in store.Nodes())
        {
            var node = _nodes.GetOrAdd(record.NodeId, id =>
            {
                logger.LogInformation("node {NodeId} at {Url} learned from the shared metadata", id, record.Url);
                return new Node(id, record.Url) { Persisted = true };
            });
            node.Shared = record;
            if (node.Url != record.Url && record.ObservedMs > node.ObservedMs)
            {
                node.Url = record.Url; // re-joined elsewhere, seen by another coordinator more recently
            }
            _unresolvedUrls.TryRemove(record.Url, out _);
        }
        var refreshMs = (long)SyncInterval.TotalMilliseconds;
        foreach (var node in _nodes.Values)
        {
            var observed = node.ObservedMs;
            if (observed == 0)
            {
                continue; // nothing to tell: this coordinator never observed the node
            }
            var verdict = node.LocalStatus(settings) switch
            {
                NodeStatus.Alive => NodeVerdict.Alive,
                NodeStatus.Suspect => NodeVerdict.Suspect,
                _ => NodeVerdict.Down,
            };
            var shared = node.Shared;
            var publish = shared?.Verdict is null
                || (observed > shared.ObservedMs && (verdict != shared.Verdict || observed - shared.ObservedMs >= refreshMs));
            if (!publish)
            {
                continue;
            }
            var mine = new NodeRecord(node.Id, node.Url) { Verdict = verdict, ObservedMs = observed, By = CoordinatorId };
            store.PutNode(mine);
            node.Shared = mine;
            node.Persisted = true;
            if (verdict != shared?.Verdict)
            {
                logger.LogInformation("node {NodeId} verdict {Verdict} published", node.Id, verdict);
            }
        }
    }
}
