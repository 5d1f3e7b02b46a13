using System.Diagnostics;
using Prometheus;

namespace NanoKv.Core.Metrics;

/// <summary>Phases of a PUT, timed separately so a slow fsync, a slow client or a slow index can be told apart.</summary>
public enum PutPhase
{
    /// <summary>Reserving the upload on N volumes.</summary>
    Prepare,

    /// <summary>Streaming the body to every replica until each has fsync'd it.</summary>
    Upload,

    /// <summary>The commit call to every replica.</summary>
    Commit,

    /// <summary>RocksDB writes of the pending and committed metadata.</summary>
    Metadata,
}

/// <summary>Coordinator series: the write protocol's phases and failures, plus gauges of cluster state read at scrape time.</summary>
public sealed class CoordinatorMetrics : ServerMetrics
{
    private static readonly string[] PhaseNames = [.. Enum.GetNames<PutPhase>().Select(n => n.ToLowerInvariant())];

    /// <summary>Label children resolved once: the data path indexes an array instead of hashing label values.</summary>
    private readonly Histogram.Child[] _phases;
    private readonly Counter.Child[] _phaseFailures;

    public CoordinatorMetrics()
    {
        PhaseDuration = Factory.CreateHistogram("nanokv_put_phase_duration_seconds", "time spent in each PUT phase (prepare, upload, commit, metadata)",
            new HistogramConfiguration { LabelNames = ["phase"], Buckets = LatencyBuckets });
        ReplicaFailures = Factory.CreateCounter("nanokv_replica_failures_total", "replica calls that failed during a PUT, by phase", ["phase"]);
        _phases = [.. PhaseNames.Select(p => PhaseDuration.WithLabels(p))];
        _phaseFailures = [.. PhaseNames.Select(p => ReplicaFailures.WithLabels(p))];
        Aborts = Factory.CreateCounter("nanokv_put_aborts_total", "PUTs aborted before commit (nothing was written)");
        Rollbacks = Factory.CreateCounter("nanokv_put_rollbacks_total", "partially committed writes rolled back (by a PUT or by recovery)");
        VerifiedReadFailures = Factory.CreateCounter("nanokv_verified_read_failures_total", "proxied reads whose bytes did not match the committed BLAKE3 (transfer cut)");
        ReadHandoffs = Factory.CreateCounter("nanokv_read_handoffs_total", "full proxied reads (S3 GET, ?proxy=1) handed to a replica on this host, which sent them into the client's connection itself: sent, source_cut (the volume failed after the head: transfer cut), client_gone, declined (relayed instead)", ["outcome"]);
        SpliceRelays = Factory.CreateCounter("nanokv_splice_relays_total", "full proxied reads (S3 GET, ?proxy=1) spliced from a volume's read port to the client: sent, source_cut (the volume failed after the head: transfer cut), client_gone, declined (served by the ordinary relay)", ["outcome"]);
        CorruptReports = Factory.CreateCounter("nanokv_corrupt_reports_total", "volume reports of a replica failing its checksum");
        PendingWrites = Factory.CreateGauge("nanokv_pending_writes", "keys with a write in progress (or left by a crash until recovery)");
        OwedDeletes = Factory.CreateGauge("nanokv_owed_deletes", "tombstoned keys whose delete has not reached every replica yet");
        NodeState = Factory.CreateGauge("nanokv_node_state", "1 for the current state of each volume (alive, suspect, down), 0 otherwise", ["node", "state"]);
        NodeHeartbeatAge = Factory.CreateGauge("nanokv_node_heartbeat_age_seconds", "seconds since the volume's last heartbeat or successful probe", ["node"]);
        NodeCapacity = Factory.CreateGauge("nanokv_node_capacity_bytes", "filesystem size of the volume's data folder, as last reported", ["node"]);
        NodeFree = Factory.CreateGauge("nanokv_node_free_bytes", "free bytes on the volume's filesystem, as last reported", ["node"]);
        OpsJobs = Factory.CreateGauge("nanokv_ops_jobs", "ops jobs run by this coordinator since start, by command and state", ["command", "state"]);
        OpsDone = Factory.CreateGauge("nanokv_ops_job_done", "keys processed by the latest job of each ops command", ["command"]);
        OpsTotal = Factory.CreateGauge("nanokv_ops_job_total", "keys the latest job of each ops command will process (0 while counting)", ["command"]);
        RocksDb = Factory.CreateGauge("nanokv_rocksdb_property", "RocksDB properties of the index (sizes in bytes)", ["property"]);
    }

    public Histogram PhaseDuration { get; }

    public Counter ReplicaFailures { get; }

    public Counter Aborts { get; }

    public Counter Rollbacks { get; }

    public Counter VerifiedReadFailures { get; }

    public Counter CorruptReports { get; }

    public Counter SpliceRelays { get; }

    public Counter ReadHandoffs { get; }

    public Gauge PendingWrites { get; }

    public Gauge OwedDeletes { get; }

    public Gauge NodeState { get; }

    public Gauge NodeHeartbeatAge { get; }

    public Gauge NodeCapacity { get; }

    public Gauge NodeFree { get; }

    public Gauge OpsJobs { get; }

    public Gauge OpsDone { get; }

    public Gauge OpsTotal { get; }

    public Gauge RocksDb { get; }

    /// <summary>Records the time since <paramref name="startedTimestamp"/> (a Stopwatch timestamp) as one phase; returns now, to chain phases.</summary>
    public long Phase(PutPhase phase, long startedTimestamp)
    {
        var now = Stopwatch.GetTimestamp();
        _phases[(int)phase].Observe(Stopwatch.GetElapsedTime(startedTimestamp, now).TotalSeconds);
        return now;
    }

    /// <summary>Counts failed replica calls of one phase.</summary>
    public void ReplicaFailed(PutPhase phase, int count = 1)
    {
        if (count > 0)
        {
            _phaseFailures[(int)phase].Inc(count);
        }
    }
}
