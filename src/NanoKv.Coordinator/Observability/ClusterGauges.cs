using System.Globalization;
using NanoKv.Core.Metrics;
using NanoKv.Metadata;

namespace NanoKv.Coordinator.Observability;

/// <summary>Fills the coordinator's gauges at scrape time from the index, the node registry and the ops jobs.</summary>
public static class ClusterGauges
{
    private static readonly string[] States = ["alive", "suspect", "down"];

    /// <summary>RocksDB properties exported as nanokv_rocksdb_property{property=...}: index size and compaction state.</summary>
    private static readonly string[] RocksDbProperties =
    [
        "rocksdb.total-sst-files-size",
        "rocksdb.live-sst-files-size",
        "rocksdb.estimate-live-data-size",
        "rocksdb.cur-size-all-mem-tables",
        "rocksdb.estimate-num-keys",
        "rocksdb.num-running-compactions",
        "rocksdb.compaction-pending",
        "rocksdb.estimate-pending-compaction-bytes",
        "rocksdb.num-files-at-level0",
    ];

    public static void Observe(CoordinatorMetrics metrics, IMetaStore store, NodeRegistry nodes, OpsJobs jobs)
    {
        metrics.OnScrape(() =>
        {
            metrics.PendingWrites.Set(store.PendingKeys().Count);
            metrics.OwedDeletes.Set(store.OwedDeleteKeys().Count);
            foreach (var n in nodes.Views())
            {
                foreach (var s in States)
                {
                    metrics.NodeState.WithLabels(n.NodeId, s).Set(string.Equals(n.Status, s, StringComparison.OrdinalIgnoreCase) ? 1 : 0);
                }
                if (n.LastHeartbeatAgeMs is long age)
                {
                    metrics.NodeHeartbeatAge.WithLabels(n.NodeId).Set(age / 1000.0);
                }
                if (n.CapacityBytes is long cap)
                {
                    metrics.NodeCapacity.WithLabels(n.NodeId).Set(cap);
                }
                if (n.FreeBytes is long free)
                {
                    metrics.NodeFree.WithLabels(n.NodeId).Set(free);
                }
            }
            var statuses = jobs.Statuses();
            foreach (var group in statuses.GroupBy(j => (j.Command, j.State)))
            {
                metrics.OpsJobs.WithLabels(group.Key.Command, group.Key.State).Set(group.Count());
            }
            foreach (var latest in statuses.GroupBy(j => j.Command).Select(g => g.Last()))
            {
                metrics.OpsDone.WithLabels(latest.Command).Set(latest.Done);
                metrics.OpsTotal.WithLabels(latest.Command).Set(latest.Total);
            }
            foreach (var p in RocksDbProperties)
            {
                if (double.TryParse(store.Property(p), NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
                {
                    metrics.RocksDb.WithLabels(p["rocksdb.".Length..]).Set(v);
                }
            }
        });
    }
}
