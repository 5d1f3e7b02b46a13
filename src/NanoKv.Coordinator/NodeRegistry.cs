using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Coordinator;

/// <summary>Health of a node as placement sees it.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<NodeStatus>))]
public enum NodeStatus
{
    Alive,
    Suspect,
    Down,
}

/// <summary>One row of GET /admin/nodes.</summary>
public sealed record NodeView(
    [property: JsonPropertyName("node_id")] string NodeId,
    [property: JsonPropertyName("url")] string Url,
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("last_heartbeat")] DateTimeOffset? LastHeartbeat,
    [property: JsonPropertyName("last_heartbeat_age_ms")] long? LastHeartbeatAgeMs,
    [property: JsonPropertyName("consecutive_failures")] int ConsecutiveFailures,
    [property: JsonPropertyName("capacity_bytes")] long? CapacityBytes,
    [property: JsonPropertyName("free_bytes")] long? FreeBytes,
    [property: JsonPropertyName("verdict_by")] string? VerdictBy = null);

/// <summary>Timing of the health state machine.</summary>
public sealed record HealthSettings
{
    public TimeSpan ProbeInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>No heartbeat or successful probe for this long: suspect (not used for new placements).</summary>
    public TimeSpan SuspectAfter { get; init; } = TimeSpan.FromSeconds(6);

    /// <summary>No sign of life for this long, or this many failed probes in a row: down.</summary>
    public TimeSpan DownAfter { get; init; } = TimeSpan.FromSeconds(15);

    public int DownAfterFailures { get; init; } = 3;
}

/// <summary>
/// Node inventory and health: volumes join and heartbeat; the coordinator also probes every node's
/// /healthz, so statically configured volumes need no heartbeat. Status is derived from observations; on
/// shared metadata (<see cref="SyncVerdictsAsync"/>) the freshest observation of any coordinator counts.
/// </summary>
public sealed partial class NodeRegistry(IMetaStore store, HttpClient http, HealthSettings settings, ILogger logger)
{
    private readonly ConcurrentDictionary<string, Node> _nodes = new();
    private readonly ConcurrentDictionary<string, byte> _unresolvedUrls = new();

    public HealthSettings Settings => settings;

    /// <summary>Loads persisted nodes (status unknown until they answer) and the --volumes list.</summary>
    public void Load(IEnumerable<string> staticUrls)
    {
        foreach (var n in store.Nodes())
        {
            _nodes[n.NodeId] = new Node(n.NodeId, n.Url) { Persisted = true };
        }
        foreach (var url in staticUrls)
        {
            var u = url.TrimEnd('/');
            if (!_nodes.Values.Any(n => n.Url == u))
            {
                _unresolvedUrls[u] = 0;
            }
        }
    }

    /// <summary>Registers or refreshes a node from its join/heartbeat message.</summary>
    public void Join(NodeAnnounce a)
    {
        var url = a.Url.TrimEnd('/');
        var node = _nodes.GetOrAdd(a.NodeId, id => new Node(id, url));
        if (node.Url != url || !node.Persisted)
        {
            node.Url = url;
            store.PutNode(new NodeRecord(a.NodeId, url));
            node.Persisted = true;
            logger.LogInformation("node {NodeId} joined at {Url}", a.NodeId, url);
        }
        _unresolvedUrls.TryRemove(url, out _);
        node.ReadUrl = a.ReadUrl?.TrimEnd('/');
        node.HandoffSocket = a.HandoffSocket;
        node.MarkSeen(a.CapacityBytes, a.FreeBytes);
    }

    /// <summary>Heartbeat from a known node; false when unknown (it should join).</summary>
    public bool Heartbeat(NodeAnnounce a)
    {
        if (!_nodes.TryGetValue(a.NodeId, out var node))
        {
            return false;
        }
        if (node.Url != a.Url.TrimEnd('/'))
        {
            Join(a);
            return true;
        }
        node.ReadUrl = a.ReadUrl?.TrimEnd('/');
        node.HandoffSocket = a.HandoffSocket;
        node.MarkSeen(a.CapacityBytes, a.FreeBytes);
        return true;
    }

    public NodeStatus StatusOf(string nodeId) => _nodes.TryGetValue(nodeId, out var n) ? n.Status(settings, CoordinatorId) : NodeStatus.Down;

    public string? UrlOf(string nodeId) => _nodes.TryGetValue(nodeId, out var n) ? n.Url : null;

    /// <summary>The node's sendfile read port for plain full GETs, or null (none, or not heard from yet).</summary>
    public string? ReadUrlOf(string nodeId) => _nodes.TryGetValue(nodeId, out var n) ? n.ReadUrl : null;

    /// <summary>The node's unix socket for read handoffs (usable only on its host), or null.</summary>
    public string? HandoffSocketOf(string nodeId) => _nodes.TryGetValue(nodeId, out var n) ? n.HandoffSocket : null;

    /// <summary>Ids of nodes placement may use.</summary>
    public List<string> AliveIds() => _nodes.Values.Where(n => n.Status(settings, CoordinatorId) == NodeStatus.Alive).Select(n => n.Id).ToList();

    public List<string> AllIds() => [.. _nodes.Keys];

    /// <summary>True when placement can find n alive volumes: the coordinator can take writes.</summary>
    public bool CanPlace(int n) => AliveIds().Count >= n;

    /// <summary>GET /readyz for load balancers: 200 when N replicas are placeable, else 503 naming the shortfall.</summary>
    public IResult Readiness(int replicas)
    {
        var alive = AliveIds().Count;
        return alive >= replicas
            ? Results.Json(new { status = "ready", alive_nodes = alive, replicas })
            : ApiError.Result(503, ApiError.Codes.InsufficientNodes, $"{alive} alive volumes, {replicas} needed to place a write");
    }

    /// <summary>URLs of every known volume: the pull allowlist volumes receive with each heartbeat.</summary>
    public List<string> Urls() => _nodes.Values.Select(n => n.Url).ToList();

    /// <summary>True when the URL belongs to a registered node (pull sources must be cluster members).</summary>
    public bool IsNodeUrl(string url) => _nodes.Values.Any(n => n.Url == url.TrimEnd('/'));

    /// <summary>Reports a failed call so placement stops choosing a node that just refused a connection.</summary>
    public void ReportFailure(string nodeId)
    {
        if (_nodes.TryGetValue(nodeId, out var n))
        {
            n.MarkFailed();
        }
    }

    public List<NodeView> Views()
    {
        var now = DateTimeOffset.UtcNow;
        return _nodes.Values.OrderBy(n => n.Id, StringComparer.Ordinal).Select(n => new NodeView(
            n.Id,
            n.Url,
            n.Status(settings, CoordinatorId).ToString().ToLowerInvariant(),
            n.LastSeen,
            n.LastSeen is { } t ? (long)(now - t).TotalMilliseconds : null,
            n.Failures,
            n.Capacity,
            n.Free,
            n.AdoptedVerdict(CoordinatorId)?.By)).ToList();
    }

    /// <summary>Probes every node until cancelled.</summary>
    public async Task ProbeLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            await ProbeAllAsync(ct);
            try
            {
                await Task.Delay(settings.ProbeInterval, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>One round of probes: resolves static URLs to node ids and refreshes health.</summary>
    public async Task ProbeAllAsync(CancellationToken ct)
    {
        var tasks = _unresolvedUrls.Keys.Select(u => ProbeUrlAsync(u, null, ct))
            .Concat(_nodes.Values.Select(n => ProbeUrlAsync(n.Url, n, ct)));
        await Task.WhenAll(tasks);
    }

    private async Task ProbeUrlAsync(string url, Node? node, CancellationToken ct)
    {
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            cts.CancelAfter(TimeSpan.FromSeconds(2));
            var h = await http.GetFromJsonAsync<VolumeHealth>(url + "/healthz", cts.Token);
            if (h is null)
            {
                return;
            }
            if (node is not null && h.NodeId != node.Id)
            {
                logger.LogWarning("node at {Url} now reports id {Id}, expected {Expected}", url, h.NodeId, node.Id);
                node.MarkFailed();
                return;
            }
            Join(new NodeAnnounce(h.NodeId, url, h.CapacityBytes, h.FreeBytes, h.ReadUrl, h.HandoffSocket));
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or System.Text.Json.JsonException && !ct.IsCancellationRequested)
        {
            node?.MarkFailed();
        }
    }

    private sealed class Node(string id, string url)
    {
        private readonly Lock _lock = new();

        public string Id { get; } = id;

        public string Url { get; set; } = url;

        public bool Persisted { get; set; }

        /// <summary>Where the node serves plain full GETs with sendfile (from its probe or heartbeat).</summary>
        public string? ReadUrl { get; set; }

        /// <summary>Where the node takes read handoffs from a coordinator on its host.</summary>
        public string? HandoffSocket { get; set; }

        public DateTimeOffset? LastSeen { get; private set; }

        public DateTimeOffset? LastFailed { get; private set; }

        public int Failures { get; private set; }

        /// <summary>The shared verdict last read from the metadata (null on RocksDB).</summary>
        public NodeRecord? Shared { get; set; }

        /// <summary>When this coordinator last observed the node itself (a success or a failure), Unix ms; 0 = never.</summary>
        public long ObservedMs
        {
            get
            {
                lock (_lock)
                {
                    var t = LastSeen > LastFailed || LastFailed is null ? LastSeen : LastFailed;
                    return t?.ToUnixTimeMilliseconds() ?? 0;
                }
            }
        }

        public long? Capacity { get; private set; }

        public long? Free { get; private set; }

        public void MarkSeen(long? capacity, long? free)
        {
            lock (_lock)
            {
                LastSeen = DateTimeOffset.UtcNow;
                Failures = 0;
                Capacity = capacity ?? Capacity;
                Free = free ?? Free;
            }
        }

        public void MarkFailed()
        {
            lock (_lock)
            {
                Failures++;
                LastFailed = DateTimeOffset.UtcNow;
            }
        }

        /// <summary>Another coordinator's verdict, when it observed the node more recently than this one did.</summary>
        public NodeRecord? AdoptedVerdict(string me) =>
            Shared is { Verdict: not null } v && v.By != me && v.ObservedMs > ObservedMs ? v : null;

        /// <summary>The freshest observation wins: another coordinator's newer verdict, else this coordinator's own.</summary>
        public NodeStatus Status(HealthSettings s, string me)
        {
            if (AdoptedVerdict(me) is { } v)
            {
                return v.Verdict switch
                {
                    NodeVerdict.Down => NodeStatus.Down,
                    // One failed call elsewhere (a timeout on a loaded coordinator) must not stop placement everywhere:
                    // another's "suspect" counts only when this coordinator has no fresh sign of life itself.
                    NodeVerdict.Suspect => LocalStatus(s) == NodeStatus.Alive ? NodeStatus.Alive : NodeStatus.Suspect,
                    _ => AgeStatus(DateTimeOffset.UtcNow - DateTimeOffset.FromUnixTimeMilliseconds(v.ObservedMs), s, 0), // its observer may be gone too
                };
            }
            return LocalStatus(s);
        }

        private static NodeStatus AgeStatus(TimeSpan age, HealthSettings s, int failures) =>
            age > s.DownAfter || failures >= s.DownAfterFailures ? NodeStatus.Down
            : age > s.SuspectAfter || failures > 0 ? NodeStatus.Suspect
            : NodeStatus.Alive;

        /// <summary>This coordinator's own view: heartbeats, probes and failed calls.</summary>
        public NodeStatus LocalStatus(HealthSettings s)
        {
            if (LastSeen is not { } seen)
            {
                return NodeStatus.Down;
            }
            var age = DateTimeOffset.UtcNow - seen;
            if (age > s.DownAfter || Failures >= s.DownAfterFailures)
            {
                return NodeStatus.Down;
            }
            return age > s.SuspectAfter || Failures > 0 ? NodeStatus.Suspect : NodeStatus.Alive;
        }
    }
}
