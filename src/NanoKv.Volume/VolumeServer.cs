using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using NanoKv.Core;
using NanoKv.Core.Hashing;
using NanoKv.Core.Metrics;

namespace NanoKv.Volume;

/// <summary>Settings of one volume server.</summary>
public sealed record VolumeOptions
{
    public required string DataDir { get; init; }

    public string Host { get; init; } = "127.0.0.1";

    public int Port { get; init; } = 3001;

    public string? NodeId { get; init; }

    public string? PublicUrl { get; init; }

    public string? CoordinatorUrl { get; init; }

    public string? Secret { get; init; }

    public bool EnableFaults { get; init; }

    /// <summary>Volume URLs pulls may fetch from (besides those the coordinator announces).</summary>
    public IReadOnlyList<string> Peers { get; init; } = [];

    /// <summary>Hash full-body GETs against the BLAKE3 recorded at upload and fail the transfer on a mismatch.</summary>
    public bool VerifyReads { get; init; } = true;

    /// <summary>Bytes of verified blobs kept locked in memory so repeat full GETs skip the hash (0 = hash every read).</summary>
    public long PinBytes { get; init; } = VerifiedPins.DefaultBudget();

    /// <summary>Verify and pin a committed blob from <see cref="CommitPins.From"/> that is in the page cache before its first GET.</summary>
    public bool PinOnCommit { get; init; } = true;

    /// <summary>Serve full reads a coordinator on this host hands over (its client's connection) from a unix socket in the data folder.</summary>
    public bool Handoff { get; init; } = true;

    public string? TlsCert { get; init; }

    public string? TlsKey { get; init; }

    /// <summary>Port of the sendfile read port (<see cref="SendfileServer"/>): 0 = any free port, -1 = none. Never with TLS.</summary>
    public int ReadPort { get; init; }

    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(2);

    public LogLevel LogLevel { get; init; } = LogLevel.Information;
}

/// <summary>A running volume: the blob store behind the public, internal and admin HTTP API.</summary>
public sealed class VolumeServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly HttpClient _http;
    private readonly CancellationTokenSource _stop = new();
    private Task? _heartbeats;

    private VolumeServer(VolumeOptions options, WebApplication app, BlobStore store, string nodeId, HttpClient http)
    {
        Options = options;
        _app = app;
        Store = store;
        NodeId = nodeId;
        _http = http;
    }

    public VolumeOptions Options { get; }

    public BlobStore Store { get; }

    public string NodeId { get; }

    public Faults Faults { get; } = new();

    public VolumeMetrics Metrics { get; } = new();

    /// <summary>Verified blobs locked in memory (see <see cref="VerifiedPins"/>).</summary>
    public VerifiedPins Pins { get; private init; } = null!;

    /// <summary>Verifies committed blobs ahead of their first GET (see <see cref="Volume.CommitPins"/>).</summary>
    private CommitPins? _commitPins;

    /// <summary>URLs of cluster volumes, from --peers and the coordinator's heartbeat answers.</summary>
    private readonly ConcurrentDictionary<string, byte> _peers = new();

    /// <summary>URL other nodes and clients use to reach this volume.</summary>
    public string Url { get; private set; } = "";

    /// <summary>Base URL of the sendfile read port, or null when it is off (TLS, --read-port -1).</summary>
    public string? ReadUrl { get; private set; }

    /// <summary>The unix socket where a coordinator on this host hands over full reads; null when none.</summary>
    public string? HandoffSocket => _handoff?.Path;

    private SendfileServer? _readPort;
    private HandoffServer? _handoff;

    public static VolumeServer Create(VolumeOptions options)
    {
        var store = new BlobStore(options.DataDir);
        var nodeId = ResolveNodeId(options, store.Root);
        var builder = ServerHost.CreateBuilder("nanokv-volume", options.Host, options.Port, options.LogLevel, options.TlsCert, options.TlsKey);
        var app = builder.Build();
        var server = new VolumeServer(options, app, store, nodeId, NodeHttp.Create(options.Secret)) { Pins = new VerifiedPins(options.VerifyReads ? options.PinBytes : 0) };
        store.BlobRemoved = server.Pins.Evict;
        store.UploadWritten = write => server.Metrics.UploadWrites.WithLabels(write switch
        {
            FileWrite.Direct => "direct",
            FileWrite.DirectRefused => "directrefused",
            _ => "cached",
        }).Inc();
        foreach (var peer in options.Peers)
        {
            server._peers[peer.TrimEnd('/')] = 0;
        }
        app.UseRequestMetrics(server.Metrics);
        app.UseJsonErrors();
        app.UseClusterSecret(options.Secret);
        server.Metrics.ObserveDisk(store.BlobsDir, store.CapacityBytes, store.FreeBytes);
        server.MapRoutes();
        return server;
    }

    public async Task StartAsync(CancellationToken ct = default)
    {
        await _app.StartAsync(ct);
        if (Options.PinOnCommit && Pins.Budget > 0)
        {
            _commitPins = new CommitPins(Pins, Metrics, _app.Logger);
        }
        Url = (Options.PublicUrl ?? ServerHost.BoundAddress(_app).ToString()).TrimEnd('/');
        if (Options.ReadPort >= 0 && Options.TlsCert is null)
        {
            _readPort = SendfileServer.Start(this, ServerHost.ParseHost(Options.Host), Options.ReadPort, _app.Logger);
            ReadUrl = new UriBuilder(Url) { Port = _readPort.Port }.Uri.ToString().TrimEnd('/');
            _app.Logger.LogInformation("sendfile read port for full GETs at {ReadUrl}", ReadUrl);
            if (Options.Handoff)
            {
                _handoff = HandoffServer.Start(this, Store.Root, _app.Logger);
            }
        }
        _app.Logger.LogInformation("volume {NodeId} serving {Dir} at {Url}, BLAKE3 {Hash}{Why}", NodeId, Store.Root, Url, ContentHasher.Backend, ContentHasher.NativeUnavailableReason is { } why ? $" ({why})" : "");
        if (Options.CoordinatorUrl is not null)
        {
            _heartbeats = Task.Run(() => HeartbeatLoopAsync(_stop.Token), CancellationToken.None);
        }
    }

    public Task WaitForShutdownAsync(CancellationToken ct = default) => _app.WaitForShutdownAsync(ct);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_handoff is not null)
        {
            await _handoff.DisposeAsync();
        }
        if (_readPort is not null)
        {
            await _readPort.DisposeAsync();
        }
        if (_heartbeats is not null)
        {
            await _heartbeats;
        }
        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
        if (_commitPins is not null)
        {
            await _commitPins.DisposeAsync();
        }
        _http.Dispose();
        _stop.Dispose();
        Pins.Dispose();
    }

    private static string ResolveNodeId(VolumeOptions options, string root)
    {
        var file = Path.Combine(root, "node_id");
        if (options.NodeId is not null)
        {
            if (!File.Exists(file) || File.ReadAllText(file).Trim() != options.NodeId)
            {
                Durable.WriteAllBytes(file, System.Text.Encoding.UTF8.GetBytes(options.NodeId));
            }
            return options.NodeId;
        }
        if (File.Exists(file))
        {
            return File.ReadAllText(file).Trim();
        }
        // Derived from the data folder so the same folder keeps the same identity, then persisted in it.
        var id = "vol-" + KeyCodec.Hash(System.Text.Encoding.UTF8.GetBytes(root))[..8];
        Durable.WriteAllBytes(file, System.Text.Encoding.UTF8.GetBytes(id));
        return id;
    }

    private async Task HeartbeatLoopAsync(CancellationToken ct)
    {
        var coord = Options.CoordinatorUrl!.TrimEnd('/');
        var joined = false;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var announce = new NodeAnnounce(NodeId, Url, Store.CapacityBytes(), Store.FreeBytes(), ReadUrl, _handoff?.Path);
                using var resp = await _http.PostAsJsonAsync(coord + (joined ? "/admin/heartbeat" : "/admin/join"), announce, ct);
                if (resp.IsSuccessStatusCode)
                {
                    var answer = await resp.Content.ReadFromJsonAsync<HeartbeatAnswer>(ct);
                    foreach (var url in answer?.Nodes ?? [])
                    {
                        _peers[url.TrimEnd('/')] = 0;
                    }
                    if (!joined)
                    {
                        _app.Logger.LogInformation("joined coordinator {Coordinator} as {NodeId}", coord, NodeId);
                    }
                    joined = true;
                }
                else if (resp.StatusCode == System.Net.HttpStatusCode.NotFound)
                {
                    joined = false; // coordinator forgot us (e.g. new index): join again
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
            {
                _app.Logger.LogDebug("heartbeat to {Coordinator} failed: {Error}", coord, ex.Message);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            try
            {
                await Task.Delay(Options.HeartbeatInterval, ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private void MapRoutes()
    {
        var app = _app;
        app.MapGet("/healthz", async (HttpContext ctx) =>
            ServerHost.IsExactRoute(ctx, "/healthz")
                ? Results.Json(new VolumeHealth("ok", NodeId, Store.CapacityBytes(), Store.FreeBytes(), ReadUrl, _handoff?.Path))
                : await ServeBlob(ctx));

        app.MapMetrics(Metrics, Options.Secret);

        app.MapPost("/internal/prepare", Handler("prepare", ctx =>
        {
            var key = RequireKey(ctx, "key");
            var uploadId = RequireString(ctx, "upload_id");
            long? expected = OptionalLong(ctx, "expected_size");
            return Task.FromResult(Results.Json(Store.Prepare(key, uploadId, expected)));
        }));

        app.MapMethods("/internal/upload", ["PUT", "POST"], Handler("upload", async ctx =>
        {
            ServerHost.AllowLargeBody(ctx);
            var uploadId = RequireString(ctx, "upload_id");
            // A header, not a query parameter: a volume of an older release ignores it (and refuses unknown parameters).
            var bypassCache = ctx.Request.Headers[NodeHttp.CacheHeader].ToString() switch
            {
                "" or "1" => false,
                "0" => true,
                var other => throw new VolumeException(400, ApiError.Codes.InvalidArgument, $"{NodeHttp.CacheHeader} must be 0 or 1, not '{other}'"),
            };
            if (RawQuery.Get(ctx, "key") is not null)
            {
                // Prepare on arrival: refuse (full, faulty) before reading, so with Expect: 100-continue the
                // coordinator has sent no byte of the body and can still send it to another node.
                var key = RequireKey(ctx, "key");
                if (await InjectedFaultAsync(ctx, "prepare") is { } refused)
                {
                    return refused;
                }
                Store.Prepare(key, uploadId, OptionalLong(ctx, "expected_size"));
            }
            if (Faults.IsArmed("upload"))
            {
                // An upload fault fires once the body flows (mid-upload), not before the first byte.
                var peek = await ctx.Request.BodyReader.ReadAsync(ctx.RequestAborted);
                ctx.Request.BodyReader.AdvanceTo(peek.Buffer.Start);
                if (await InjectedFaultAsync(ctx, "upload") is { } injected)
                {
                    return injected;
                }
            }
            var result = Faults.Take("upload_corrupt") is not null
                ? await Store.ReceiveAsync(uploadId, new CorruptingStream(ctx.Request.Body), ctx.Request.Query["etag"], ctx.RequestAborted)
                : await Store.ReceiveAsync(uploadId, ctx.Request.BodyReader, ctx.Request.Query["etag"], ctx.RequestAborted, bypassCache);
            return Results.Json(result);
        }));

        app.MapGet("/internal/upload", Handler("status", ctx =>
            Task.FromResult(Results.Json(Store.Status(RequireString(ctx, "upload_id"))))));

        app.MapPost("/internal/pull", Handler("pull", PullAsync));

        app.MapPost("/internal/commit", Handler("commit", ctx =>
        {
            var uploadId = RequireString(ctx, "upload_id");
            var key = RequireKey(ctx, "key");
            var version = OptionalLong(ctx, "version") ?? VersionNow();
            var size = Store.Commit(uploadId, key, version);
            _commitPins?.Offer(Store.BlobPath(key), size);
            return Task.FromResult(Results.Json(new { committed = true, upload_id = uploadId, version }));
        }));

        app.MapPost("/internal/abort", Handler("abort", async ctx =>
        {
            var uploadId = RequireString(ctx, "upload_id");
            var key = RawQuery.Get(ctx, "key") is null ? null : RequireKey(ctx, "key");
            await Store.AbortAsync(uploadId, key, OptionalLong(ctx, "version"));
            return Results.Json(new { aborted = true, upload_id = uploadId });
        }));

        app.MapPost("/internal/delete", Handler("delete", ctx =>
        {
            var key = RequireKey(ctx, "key");
            var version = OptionalLong(ctx, "version") ?? VersionNow();
            var tombstone = !string.Equals(ctx.Request.Query["tombstone"], "false", StringComparison.OrdinalIgnoreCase);
            Store.Delete(key, version, tombstone);
            return Task.FromResult(Results.Json(new { deleted = true, version, tombstone }));
        }));

        app.MapGet("/admin/list", Handler("list", ctx =>
        {
            var limit = (int)(OptionalLong(ctx, "limit") ?? 1000);
            string? prefix = null;
            if (RawQuery.Get(ctx, "prefix") is string p)
            {
                prefix = KeyCodec.TryDecode(p, out var pk, out _) ? System.Text.Encoding.UTF8.GetString(pk) : null;
            }
            var tombs = string.Equals(ctx.Request.Query["tombstones"], "true", StringComparison.OrdinalIgnoreCase);
            return Task.FromResult(Results.Json(Store.List(limit, NullIfEmpty(ctx.Request.Query["after"]), prefix, tombs)));
        }));

        app.MapGet("/admin/blob", Handler("blob", async ctx =>
        {
            var key = RequireKey(ctx, "key");
            var deep = string.Equals(ctx.Request.Query["deep"], "true", StringComparison.OrdinalIgnoreCase);
            return Results.Json(await Store.InfoAsync(key, deep, ctx.RequestAborted));
        }));

        app.MapPost("/admin/purge_tombstone", Handler("purge_tombstone", ctx =>
        {
            Store.PurgeTombstone(RequireKey(ctx, "key"));
            return Task.FromResult(Results.Json(new { purged = true }));
        }));

        app.MapPost("/admin/sweep_tmp", Handler("sweep_tmp", ctx =>
        {
            var age = OptionalLong(ctx, "safe_age_secs") ?? 3600;
            var (files, bytes) = Store.SweepTmp(TimeSpan.FromSeconds(age));
            return Task.FromResult(Results.Json(new { removed_files = files, removed_bytes = bytes }));
        }));

        Faults.Map(app, Options.EnableFaults);

        app.MapMethods("/{**key}", ["GET", "HEAD"], (Func<HttpContext, Task<IResult>>)ServeBlob);
        app.MapFallback((HttpContext ctx) => ApiError.NotFoundResult($"no route for {ctx.Request.Method} {ctx.Request.Path}"));
    }

    private async Task<IResult> PullAsync(HttpContext ctx)
    {
        var uploadId = RequireString(ctx, "upload_id");
        var from = RequireString(ctx, "from");
        if (!Uri.TryCreate(from, UriKind.Absolute, out var fromUri) || (fromUri.Scheme != "http" && fromUri.Scheme != "https"))
        {
            throw new VolumeException(400, ApiError.Codes.InvalidArgument, "from must be an absolute http(s) URL of a volume");
        }
        // Only cluster volumes may be pull sources (no fetching arbitrary URLs on a caller's behalf). A volume
        // with neither a coordinator nor --peers (a standalone dev volume) has no list to check against.
        if ((Options.CoordinatorUrl is not null || Options.Peers.Count > 0) && !await IsPeerAsync(from.TrimEnd('/'), ctx.RequestAborted))
        {
            throw new VolumeException(403, ApiError.Codes.UnknownSource, $"{from} is not a registered cluster volume");
        }
        var key = Store.UploadKey(uploadId);
        var url = NodeHttp.ObjectUri(from, key);
        HttpResponseMessage resp;
        try
        {
            resp = await _http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, ctx.RequestAborted);
        }
        catch (HttpRequestException ex)
        {
            throw new VolumeException(502, ApiError.Codes.Unavailable, $"pull source {from} unreachable: {ex.Message}");
        }
        using (resp)
        {
            if ((int)resp.StatusCode is >= 400 and < 500)
            {
                // The source does not have it (or refuses us): retrying will not help, try another source.
                throw new VolumeException(424, ApiError.Codes.Unavailable, $"pull source {from} answered {(int)resp.StatusCode}");
            }
            if (!resp.IsSuccessStatusCode)
            {
                throw new VolumeException(502, ApiError.Codes.Unavailable, $"pull source {from} answered {(int)resp.StatusCode}");
            }
            await using var body = await resp.Content.ReadAsStreamAsync(ctx.RequestAborted);
            var src = Faults.Take("pull_corrupt") is not null ? new CorruptingStream(body) : body;
            var result = await Store.ReceiveAsync(uploadId, src, ctx.Request.Query["etag"], ctx.RequestAborted);
            return Results.Json(result);
        }
    }

    /// <summary>Known peer, or one the coordinator lists now (a volume that joined since our last heartbeat).</summary>
    private async Task<bool> IsPeerAsync(string url, CancellationToken ct)
    {
        if (_peers.ContainsKey(url) || Options.CoordinatorUrl is not { } coord)
        {
            return _peers.ContainsKey(url);
        }
        try
        {
            var nodes = await _http.GetFromJsonAsync<List<PeerView>>(coord.TrimEnd('/') + "/admin/nodes", ct);
            foreach (var n in nodes ?? [])
            {
                _peers[n.Url.TrimEnd('/')] = 0;
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or System.Text.Json.JsonException or TaskCanceledException)
        {
            _app.Logger.LogWarning("could not refresh the node list from {Coordinator}: {Error}", coord, ex.Message);
        }
        return _peers.ContainsKey(url);
    }

    /// <summary>Response header of a full read the volume verifies end to end (see ServeBlob).</summary>
    public const string VerifiedHeader = NodeHttp.VerifiedHeader;

    private async Task<IResult> ServeBlob(HttpContext ctx)
    {
        if (Faults.Take("get") is FaultRule f)
        {
            return ApiError.Result(f.Status, ApiError.Codes.Injected, "injected fault on get");
        }
        if (!KeyCodec.TryParseTarget(ServerHost.RawTarget(ctx), out var key, out var error, KeyCodec.MaxInternalKeyBytes))
        {
            return ApiError.BadRequest(ApiError.Codes.InvalidKey, error);
        }
        // With a cluster secret, blobs are readable by cluster nodes (secret header) or through a coordinator
        // redirect (presigned, short-lived URL) only.
        if (Options.Secret is { Length: > 0 } secret && !ClusterAuth.HasSecret(ctx, secret) && !ClusterAuth.HasValidSignature(ctx, secret, KeyCodec.Encode(key)))
        {
            return ApiError.Result(401, ApiError.Codes.Unauthorized, "reads need a presigned URL from the coordinator or the cluster secret");
        }
        var path = Store.BlobPath(key);
        var fi = new FileInfo(path);
        if (!fi.Exists)
        {
            return ApiError.NotFoundResult($"no blob for key {KeyCodec.Display(key)}");
        }
        var version = BlobStore.TimeToVersion(fi.LastWriteTimeUtc);
        if (NodeHttp.ParseVersion(ctx.Request.Query[NodeHttp.VersionParam]) is long want && version != want)
        {
            return ApiError.NotFoundResult($"key {KeyCodec.Display(key)} is at version {version} here, not {want}: it changed since the coordinator's lookup; read it again through the coordinator");
        }
        var etag = BlobStore.StoredEtag(path);
        ctx.Response.Headers["X-NanoKv-Version"] = version.ToString(CultureInfo.InvariantCulture);
        var tag = etag is null ? null : new Microsoft.Net.Http.Headers.EntityTagHeaderValue("\"" + etag + "\"");
        if (HttpMethods.IsHead(ctx.Request.Method))
        {
            ctx.Response.ContentLength = fi.Length;
            ctx.Response.Headers.AcceptRanges = "bytes";
            if (tag is not null)
            {
                ctx.Response.Headers.ETag = tag.ToString();
            }
            return Results.Empty;
        }
        if (Options.VerifyReads && etag is not null && ctx.Request.Headers.Range.Count == 0 && ctx.Request.Headers.IfNoneMatch.Count == 0)
        {
            // Full reads are hashed on the way out; the last chunk is held until the hash matches.
            ctx.Response.ContentLength = fi.Length;
            ctx.Response.ContentType = "application/octet-stream";
            ctx.Response.Headers.AcceptRanges = "bytes";
            ctx.Response.Headers.ETag = tag!.ToString();
            // Promise to a coordinator proxying this read: the body is checked against this ETag before its last
            // chunk leaves (or the connection is cut), so it need not hash the bytes again.
            ctx.Response.Headers[VerifiedHeader] = "blake3";
            CopyResult copy;
            var pinned = Pins.TryAcquire(path);
            if (pinned is not null)
            {
                // Verified while locked in memory and untouched since: these pages are the bytes that matched.
                using (pinned)
                {
                    await ctx.Response.StartAsync(ctx.RequestAborted);
                    copy = await VerifiedSend.SendPinnedAsync(pinned, ctx.Response.BodyWriter, null, ctx.RequestAborted);
                }
                if (!copy.Ok)
                {
                    // The last chunk was held back: the client sees a failed transfer. A changed file drops its
                    // pin at the next TryAcquire (stamp mismatch); a client that went away leaves it valid.
                    ctx.Abort();
                }
                return Results.Empty;
            }
            using (var fresh = Pins.TryPin(path))
            {
                await ctx.Response.StartAsync(ctx.RequestAborted);
                if (fresh is not null && fresh.Length == fi.Length)
                {
                    copy = await VerifiedSend.SendPinnedAsync(fresh, ctx.Response.BodyWriter, etag, ctx.RequestAborted);
                    if (copy.Ok)
                    {
                        Pins.Commit(fresh);
                    }
                }
                else
                {
                    using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.SequentialScan);
                    copy = await VerifiedSend.SendAsync(file, fi.Length, ctx.Response.BodyWriter, etag, ctx.RequestAborted);
                }
            }
            if (copy.Status == CopyStatus.InputError)
            {
                await OnCorruptReadAsync(key, copy.Error?.Message);
                ctx.Abort();
            }
            return Results.Empty;
        }
        // PhysicalFile handles Range/If-None-Match.
        return Results.File(path, "application/octet-stream", lastModified: fi.LastWriteTimeUtc, entityTag: tag, enableRangeProcessing: true);
    }

    /// <summary>A route handler (typed as Delegate so minimal APIs write the IResult) wrapped in <see cref="Guard"/>.</summary>
    private Delegate Handler(string op, Func<HttpContext, Task<IResult>> body) =>
        (Func<HttpContext, Task<IResult>>)(ctx => Guard(ctx, op, () => body(ctx)));

    /// <summary>Query parameters each internal/admin endpoint understands; anything else is a caller bug (400).</summary>
    private static readonly Dictionary<string, string[]> AllowedParams = new()
    {
        ["prepare"] = ["key", "upload_id", "expected_size"],
        ["upload"] = ["upload_id", "etag", "key", "expected_size"],
        ["status"] = ["upload_id"],
        ["pull"] = ["upload_id", "from", "etag"],
        ["commit"] = ["upload_id", "key", "version"],
        ["abort"] = ["upload_id", "key", "version"],
        ["delete"] = ["key", "version", "tombstone"],
        ["list"] = ["limit", "after", "prefix", "tombstones"],
        ["blob"] = ["key", "deep"],
        ["purge_tombstone"] = ["key"],
        ["sweep_tmp"] = ["safe_age_secs"],
    };

    /// <summary>Runs an endpoint body with fault injection and maps VolumeException to its JSON error.</summary>
    private async Task<IResult> Guard(HttpContext ctx, string op, Func<Task<IResult>> body)
    {
        if (AllowedParams.TryGetValue(op, out var allowed) && ctx.Request.Query.Keys.FirstOrDefault(k => !allowed.Contains(k)) is string unknown)
        {
            return ApiError.BadRequest(ApiError.Codes.InvalidArgument, $"unknown query parameter '{unknown}' (accepted: {string.Join(", ", allowed)})");
        }
        // The upload endpoint places its own faults (prepare on arrival, then mid-body).
        if (op != "upload" && await InjectedFaultAsync(ctx, op) is { } injected)
        {
            return injected;
        }
        try
        {
            return await body();
        }
        catch (VolumeException ex)
        {
            return ApiError.Result(ex.Status, ex.Code, ex.Message);
        }
        catch (IOException ex) when (BlobStore.IsDiskFull(ex))
        {
            return ApiError.Result(507, ApiError.Codes.InsufficientStorage, "disk full");
        }
    }

    /// <summary>Fires an armed fault of op: a stall (null afterwards, or Empty when the caller left) or an error result.</summary>
    private async Task<IResult?> InjectedFaultAsync(HttpContext ctx, string op)
    {
        if (Faults.Take(op) is not FaultRule rule)
        {
            return null;
        }
        if (rule.Mode != "stall")
        {
            return ApiError.Result(rule.Status, ApiError.Codes.Injected, $"injected fault on {op}");
        }
        try
        {
            await Task.Delay(rule.StallMs, ctx.RequestAborted);
            return null;
        }
        catch (OperationCanceledException)
        {
            return Results.Empty;
        }
    }

    private static byte[] RequireKey(HttpContext ctx, string name) =>
        RawQuery.TryGetKey(ctx, name, out var key, out var error) ? key : throw new VolumeException(400, ApiError.Codes.InvalidKey, error);

    private static string RequireString(HttpContext ctx, string name)
    {
        var v = ctx.Request.Query[name].ToString();
        return v.Length > 0 ? v : throw new VolumeException(400, ApiError.Codes.InvalidArgument, $"missing query parameter '{name}'");
    }

    private static long? OptionalLong(HttpContext ctx, string name)
    {
        var v = ctx.Request.Query[name].ToString();
        if (v.Length == 0)
        {
            return null;
        }
        return long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n)
            ? n
            : throw new VolumeException(400, ApiError.Codes.InvalidArgument, $"query parameter '{name}' must be an integer");
    }

    private static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

    private static long VersionNow() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000;

    /// <summary>
    /// A full read found the blob's bytes differ from its stored BLAKE3: quarantine it and tell the coordinator.
    /// The caller then cuts the transfer.
    /// </summary>
    internal async Task OnCorruptReadAsync(byte[] key, string? error)
    {
        _app.Logger.LogError("corrupt blob {Key} on {NodeId}: {Error}; transfer aborted, blob quarantined", KeyCodec.Display(key), NodeId, error);
        Metrics.VerifiedReadFailures.Inc();
        // Out of blobs/ so no one reads it again; verify then sees a missing replica and repair re-copies it.
        Store.Quarantine(key);
        Metrics.Quarantines.Inc();
        // Report before failing the transfer, so a client that retries through the coordinator is
        // already sent to another replica.
        await ReportCorruptAsync(key);
    }

    /// <summary>Tells the coordinator to send readers of this key elsewhere.</summary>
    private async Task ReportCorruptAsync(byte[] key)
    {
        if (Options.CoordinatorUrl is not { } coord)
        {
            return;
        }
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            cts.CancelAfter(TimeSpan.FromSeconds(3));
            using var resp = await _http.PostAsJsonAsync(coord.TrimEnd('/') + "/admin/corrupt", new CorruptReport(NodeId, KeyCodec.Encode(key)), cts.Token);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException)
        {
            _app.Logger.LogWarning("could not report corrupt {Key} to {Coordinator}: {Error}", KeyCodec.Display(key), coord, ex.Message);
        }
    }

    private sealed record PeerView([property: System.Text.Json.Serialization.JsonPropertyName("url")] string Url);

    private sealed record HeartbeatAnswer([property: System.Text.Json.Serialization.JsonPropertyName("nodes")] List<string>? Nodes);

    /// <summary>Flips one bit of the first byte it passes on: the fault hook behind checksum tests.</summary>
    private sealed class CorruptingStream(Stream inner) : Stream
    {
        private bool _done;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await inner.ReadAsync(buffer, cancellationToken);
            if (n > 0 && !_done)
            {
                buffer.Span[0] ^= 0x01;
                _done = true;
            }
            return n;
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
