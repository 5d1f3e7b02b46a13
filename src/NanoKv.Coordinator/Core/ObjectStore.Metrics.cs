using NanoKv.Core.Metrics;

namespace NanoKv.Coordinator.Core;

/// <summary>The store's Prometheus series (PUT phases, replica failures, aborts, rollbacks), exposed by the coordinator's /metrics.</summary>
public sealed partial class ObjectStore
{
    public CoordinatorMetrics Metrics { get; } = new();
}
