using System.Collections.Concurrent;
using System.Net.Http.Json;
using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Ops;

/// <summary>One volume as an ops command sees it.</summary>
public sealed record OpsNode(string Id, string Url);

/// <summary>Copies of a key found on volumes: blobs (node, size, version) and delete markers (node, version).</summary>
public sealed class KeyCopies
{
    public List<(string Node, long Size, long Version)> Blobs { get; } = [];

    public List<(string Node, long Version)> Tombs { get; } = [];

    public (string Node, long Size, long Version)? BlobOn(string node) =>
        Blobs.FindIndex(b => b.Node == node) is var i and >= 0 ? Blobs[i] : null;
}

/// <summary>
/// What every command shares: the index, the volumes, the bounded concurrency (overall and per node),
/// the journal, the report and the progress counters.
/// </summary>
public sealed class OpsContext : IDisposable
{
    private readonly SemaphoreSlim _global;
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _perNode = new();
    private readonly int? _crashAfter;
    private int _finished;

    public OpsContext(OpsOptions options, IMetaStore store, IReadOnlyList<OpsNode> nodes, VolumeClient volumes, Journal? journal, Report report)
    {
        Options = options;
        Store = store;
        Nodes = nodes;
        Volumes = volumes;
        Journal = journal;
        Report = report;
        _global = new SemaphoreSlim(Math.Max(1, options.Concurrency));
        if (int.TryParse(Environment.GetEnvironmentVariable("NANOKV_OPS_CRASH_AFTER"), out var k))
        {
            _crashAfter = k; // test hook: die abruptly, like kill -9, after k finished keys
        }
    }

    public OpsOptions Options { get; }

    public IMetaStore Store { get; }

    public IReadOnlyList<OpsNode> Nodes { get; }

    public VolumeClient Volumes { get; }

    public Journal? Journal { get; }

    public Report Report { get; }

    public ProgressState Progress { get; } = new();

    public string? UrlOf(string nodeId) => Nodes.FirstOrDefault(n => n.Id == nodeId)?.Url;

    public IEnumerable<string> NodeIds => Nodes.Select(n => n.Id);

    /// <summary>Resolves "URL" / "id=URL" entries to node ids (asking /healthz for bare URLs).</summary>
    public static async Task<List<OpsNode>> ResolveNodesAsync(IEnumerable<string> specs, HttpClient http, CancellationToken ct)
    {
        var result = new List<OpsNode>();
        foreach (var spec in specs)
        {
            var eq = spec.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0 && !spec[..eq].Contains("://", StringComparison.Ordinal))
            {
                result.Add(new OpsNode(spec[..eq], spec[(eq + 1)..].TrimEnd('/')));
                continue;
            }
            var url = spec.TrimEnd('/');
            try
            {
                var h = await http.GetFromJsonAsync<VolumeHealth>(url + "/healthz", ct);
                result.Add(new OpsNode(h!.NodeId, url));
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or System.Text.Json.JsonException)
            {
                throw new InvalidOperationException($"volume {url} did not answer /healthz ({ex.Message}); name it as id=URL or bring it up", ex);
            }
        }
        return result;
    }

    /// <summary>Lists every blob and delete marker on every volume (paged). Unreachable volumes are reported.</summary>
    public async Task<Dictionary<string, KeyCopies>> ScanAsync(CancellationToken ct)
    {
        Progress.Start("scanning volumes", Nodes.Count);
        var all = new Dictionary<string, KeyCopies>(StringComparer.Ordinal);
        var gate = new Lock();
        await Task.WhenAll(Nodes.Select(async node =>
        {
            try
            {
                foreach (var tombstones in new[] { false, true })
                {
                    string? after = null;
                    do
                    {
                        var page = await Volumes.ListAsync(node.Url, after, tombstones, 1000, ct);
                        lock (gate)
                        {
                            foreach (var e in page.Keys)
                            {
                                if (!all.TryGetValue(e.Key, out var copies))
                                {
                                    all[e.Key] = copies = new KeyCopies();
                                }
                                if (tombstones)
                                {
                                    copies.Tombs.Add((node.Id, e.Version));
                                }
                                else
                                {
                                    copies.Blobs.Add((node.Id, e.Size, e.Version));
                                }
                            }
                        }
                        after = page.NextAfter;
                    }
                    while (after is not null);
                }
            }
            catch (HttpRequestException ex)
            {
                Report.Add("unreachable_nodes");
                Report.Detail($"node {node.Id} ({node.Url}) could not be listed: {ex.Message}");
            }
            Progress.Step();
        }));
        return all;
    }

    /// <summary>Runs work on keys with bounded concurrency, skipping journaled keys and journaling finished ones.</summary>
    public async Task ForEachKeyAsync<T>(IReadOnlyList<T> items, Func<T, string> keyOf, Func<T, CancellationToken, Task> work, CancellationToken ct)
    {
        var tasks = new List<Task>();
        foreach (var item in items)
        {
            var key = keyOf(item);
            if (Journal?.IsDone(key) == true)
            {
                Report.Add("skipped_journaled");
                Progress.Step();
                continue;
            }
            await _global.WaitAsync(ct);
            tasks.Add(Task.Run(async () =>
            {
                try
                {
                    await work(item, ct);
                    if (!Options.DryRun)
                    {
                        Journal?.MarkDone(key);
                        if (_crashAfter is int k && Interlocked.Increment(ref _finished) >= k)
                        {
                            Journal?.Dispose();
                            Environment.FailFast("NANOKV_OPS_CRASH_AFTER reached (test hook)");
                        }
                    }
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    Report.Add("errors");
                    Report.Detail($"{key}: {ex.Message}");
                }
                finally
                {
                    Progress.Step();
                    _global.Release();
                }
            }, ct));
        }
        await Task.WhenAll(tasks);
    }

    /// <summary>Runs a call against a node within its per-node concurrency limit.</summary>
    public async Task<T> OnNodeAsync<T>(string nodeId, Func<Task<T>> call)
    {
        var s = _perNode.GetOrAdd(nodeId, _ => new SemaphoreSlim(Math.Max(1, Options.ConcurrencyPerNode)));
        await s.WaitAsync();
        try
        {
            return await call();
        }
        finally
        {
            s.Release();
        }
    }

    /// <summary>
    /// Copies a committed key onto `target` from the first source that serves bytes matching the recorded
    /// size and BLAKE3 (the pull verifies them), keeping the original version. A source whose bytes do not
    /// match is reported as corrupt and never used. Returns true when the target holds a verified copy.
    /// </summary>
    public async Task<bool> CopyAsync(byte[] key, ObjectMeta meta, IEnumerable<string> sources, string target, CancellationToken ct)
    {
        var targetUrl = UrlOf(target)!;
        var uploadId = "ops" + Guid.NewGuid().ToString("N")[..24];
        var prep = await OnNodeAsync(target, () => Volumes.PrepareAsync(targetUrl, key, uploadId, meta.Size, ct));
        if (!prep.Ok)
        {
            Report.Detail($"{KeyCodec.Display(key)}: prepare on {target} failed: {prep.Describe()}");
            return false;
        }
        foreach (var source in sources)
        {
            var sourceUrl = UrlOf(source);
            if (sourceUrl is null)
            {
                continue;
            }
            var pull = await OnNodeAsync(target, () => Volumes.PullAsync(targetUrl, uploadId, sourceUrl, meta.Etag, ct));
            if (pull.Ok)
            {
                var commit = await OnNodeAsync(target, () => Volumes.CommitAsync(targetUrl, key, uploadId, meta.Version, ct));
                if (commit.Ok)
                {
                    Report.AddBytes(meta.Size);
                    return true;
                }
                Report.Detail($"{KeyCodec.Display(key)}: commit on {target} failed: {commit.Describe()}");
                break;
            }
            if (pull.Status == 422)
            {
                Report.Add("corrupt_sources_refused");
                Report.Detail($"{KeyCodec.Display(key)}: copy on {source} does not match its checksum; not used as a source");
            }
        }
        await Volumes.AbortAsync(targetUrl, uploadId, ct);
        return false;
    }

    /// <summary>Fresh BLAKE3 of a copy (reads the whole blob on the volume).</summary>
    public async Task<string?> DeepEtagAsync(byte[] key, string node, CancellationToken ct)
    {
        var url = UrlOf(node);
        if (url is null)
        {
            return null;
        }
        var r = await OnNodeAsync(node, () => Volumes.BlobInfoAsync(url, key, true, ct));
        return r.Ok ? r.As<BlobInfo>()?.Etag : null;
    }

    public static byte[] KeyBytes(string encoded) =>
        KeyCodec.TryDecode(encoded, out var key, out var error, KeyCodec.MaxInternalKeyBytes) ? key : throw new InvalidDataException($"bad key {encoded}: {error}");

    public void Dispose()
    {
        Journal?.Dispose();
        _global.Dispose();
        foreach (var s in _perNode.Values)
        {
            s.Dispose();
        }
    }
}
