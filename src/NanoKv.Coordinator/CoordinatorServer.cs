using System.Net.Http.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using NanoKv.Coordinator.Api.Native;
using NanoKv.Coordinator.Api.S3;
using NanoKv.Coordinator.Core;
using NanoKv.Coordinator.Observability;
using NanoKv.Coordinator.WebConsole;
using NanoKv.Core;
using NanoKv.Core.Hashing;
using NanoKv.Core.Metrics;
using NanoKv.Metadata;

namespace NanoKv.Coordinator;

/// <summary>Settings of one coordinator.</summary>
public sealed record CoordinatorOptions
{
    /// <summary>Local state folder: the RocksDB index (unless <see cref="MetaDsn"/> is set) and the ops journals.</summary>
    public required string DbDir { get; init; }

    /// <summary>Shared metadata database ("postgres://user@host:port/db"); null = embedded RocksDB in <see cref="DbDir"/>.</summary>
    public string? MetaDsn { get; init; }

    public string Host { get; init; } = "127.0.0.1";

    public int Port { get; init; } = 3000;

    public IReadOnlyList<string> Volumes { get; init; } = [];

    public string? Secret { get; init; }

    /// <summary>Public API keys allowed to write (and read).</summary>
    public IReadOnlyList<string> ReadWriteKeys { get; init; } = [];

    /// <summary>Public API keys allowed to read only.</summary>
    public IReadOnlyList<string> ReadOnlyKeys { get; init; } = [];

    public string? TlsCert { get; init; }

    public string? TlsKey { get; init; }

    public DataPathSettings DataPath { get; init; } = new();

    public HealthSettings Health { get; init; } = new();

    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    /// <summary>The S3 listener (second port); null = no S3 endpoint.</summary>
    public S3Options? S3 { get; init; }
}

/// <summary>A running coordinator: public object API, node membership and admin endpoints over RocksDB metadata.</summary>
public sealed class CoordinatorServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly HttpClient _http;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _background = [];
    private readonly NativeObjectApi _native;
    private S3Server? _s3;

    private CoordinatorServer(CoordinatorOptions options, WebApplication app, IMetaStore store, NodeRegistry nodes, ObjectStore objects, HttpClient http)
    {
        Options = options;
        _app = app;
        Store = store;
        Nodes = nodes;
        Objects = objects;
        _http = http;
        _native = new NativeObjectApi(objects);
    }

    public CoordinatorOptions Options { get; }

    public IMetaStore Store { get; }

    public NodeRegistry Nodes { get; }

    public ObjectStore Objects { get; }

    public string Url { get; private set; } = "";

    /// <summary>The S3 endpoint's URL, when one is configured.</summary>
    public string? S3Url => _s3?.Url;

    public static CoordinatorServer Create(CoordinatorOptions options)
    {
        if (options.DataPath.Replicas < 1)
        {
            throw new ArgumentException("--replicas must be at least 1");
        }
        var store = MetaBackends.Open(options.MetaDsn, options.DbDir);
        options = options with { DataPath = options.DataPath with { CoordinatorId = CoordinatorIdentity.LoadOrCreate(options.DbDir) } };
        var builder = ServerHost.CreateBuilder("nanokv-coordinator", options.Host, options.Port, options.LogLevel, options.TlsCert, options.TlsKey, rawResponses: true);
        var app = builder.Build();
        var http = NodeHttp.Create(options.Secret);
        var nodes = new NodeRegistry(store, http, options.Health, app.Logger) { CoordinatorId = options.DataPath.CoordinatorId };
        nodes.Load(options.Volumes);
        var clock = new VersionClock(store.VersionHighWater());
        var volumes = new VolumeClient(http, options.DataPath.RetryTimeBox, options.DataPath.AttemptTimeout);
        var objects = new ObjectStore(store, nodes, volumes, clock, options.DataPath, options.Secret, app.Logger);
        var server = new CoordinatorServer(options, app, store, nodes, objects, http);
        app.UseRequestMetrics(objects.Metrics);
        app.UseJsonErrors();
        app.UseMetaUnavailable();
        app.UseClusterSecret(options.Secret);
        new AccessKeys(options.ReadWriteKeys.Count + options.ReadOnlyKeys.Count > 0 && options.Secret is { Length: > 0 } s ? [.. options.ReadWriteKeys, s] : options.ReadWriteKeys, options.ReadOnlyKeys).Use(app); // the secret is a read-write key too (the console signs in with either)
        server.MapRoutes();
        server._s3 = options.S3 is null ? null : S3Server.Create(options.S3, objects, options.TlsCert, options.TlsKey, options.LogLevel);
        return server;
    }

    public async Task StartAsync(CancellationToken ct = default)
    {
        // One probe round before the listener takes traffic: the first requests see the configured volumes'
        // real health instead of "none alive" (which failed PUTs right after start with insufficient_nodes).
        await Nodes.ProbeAllAsync(ct);
        await _app.StartAsync(ct);
        Url = ServerHost.BoundAddress(_app).ToString().TrimEnd('/');
        if (_s3 is not null)
        {
            await _s3.StartAsync(ct);
        }
        _background.Add(Task.Run(() => Nodes.ProbeLoopAsync(_stop.Token), CancellationToken.None));
        _background.Add(Task.Run(() => Objects.SweepPendingLoopAsync(_stop.Token), CancellationToken.None));
        _background.Add(Task.Run(() => Objects.RenewLeasesLoopAsync(_stop.Token), CancellationToken.None));
        if (Store.Backend != "rocksdb")
        {
            // Shared metadata: one health verdict per node for every coordinator (RocksDB has one coordinator).
            _background.Add(Task.Run(() => Nodes.SyncVerdictsLoopAsync(_stop.Token), CancellationToken.None));
        }
        _background.Add(Task.Run(() => FinishDeletesLoopAsync(_stop.Token), CancellationToken.None));
        _app.Logger.LogInformation("coordinator at {Url}, {Backend} metadata, state {Db}, {Replicas} replicas, BLAKE3 {Hash}{Why}", Url, Store.Backend, Options.DbDir, Options.DataPath.Replicas, ContentHasher.Backend, ContentHasher.NativeUnavailableReason is { } why ? $" ({why})" : "");
    }

    public Task WaitForShutdownAsync(CancellationToken ct = default) => _app.WaitForShutdownAsync(ct);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_s3 is not null)
        {
            await _s3.DisposeAsync();
        }
        await _app.StopAsync(CancellationToken.None);
        try
        {
            await Task.WhenAll(_background);
        }
        catch (OperationCanceledException)
        {
        }
        await _app.DisposeAsync();
        await Objects.DrainAsync(TimeSpan.FromSeconds(30));
        Store.Dispose();
        _http.Dispose();
        _stop.Dispose();
    }

    private async Task FinishDeletesLoopAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(Options.Health.ProbeInterval * 2, ct);
                await Objects.FinishOwedDeletesAsync(ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (Exception ex)
            {
                _app.Logger.LogError(ex, "finishing owed deletes failed");
            }
        }
    }

    private void MapRoutes()
    {
        var app = _app;
        app.MapGet("/healthz", (Delegate)(async (HttpContext ctx) =>
            ServerHost.IsExactRoute(ctx, "/healthz")
                ? Results.Json(new { status = Nodes.CanPlace(Options.DataPath.Replicas) ? "ok" : "degraded", alive_nodes = Nodes.AliveIds().Count, replicas = Options.DataPath.Replicas, pending = Store.PendingKeys().Count, owed_deletes = Store.OwedDeleteKeys().Count })
                : await _native.HandleAsync(ctx)));
        app.MapGet("/readyz", (Delegate)(async (HttpContext ctx) =>
            ServerHost.IsExactRoute(ctx, "/readyz") ? Nodes.Readiness(Options.DataPath.Replicas) : await _native.HandleAsync(ctx)));

        app.MapPost("/admin/join", async Task<IResult> (HttpContext ctx) =>
        {
            var a = await ReadAnnounceAsync(ctx);
            if (a is null)
            {
                return ApiError.BadRequest(ApiError.Codes.InvalidArgument, "body must be {node_id, url}");
            }
            Nodes.Join(a);
            return Results.Json(new { joined = true, node_id = a.NodeId, nodes = Nodes.Urls() });
        });
        app.MapPost("/admin/heartbeat", async Task<IResult> (HttpContext ctx) =>
        {
            var a = await ReadAnnounceAsync(ctx);
            if (a is null)
            {
                return ApiError.BadRequest(ApiError.Codes.InvalidArgument, "body must be {node_id, url}");
            }
            return Nodes.Heartbeat(a)
                ? Results.Json(new { ok = true, nodes = Nodes.Urls() })
                : ApiError.NotFoundResult($"node {a.NodeId} is not registered; POST /admin/join first");
        });
        app.MapGet("/admin/nodes", () => Results.Json(Nodes.Views()));
        app.MapPost("/admin/corrupt", async Task<IResult> (HttpContext ctx) =>
        {
            CorruptReport? r = null;
            try
            {
                r = await ctx.Request.ReadFromJsonAsync<CorruptReport>(ctx.RequestAborted);
            }
            catch (System.Text.Json.JsonException)
            {
            }
            if (r is null || !KeyCodec.TryDecode(r.EncodedKey, out var key, out _))
            {
                return ApiError.BadRequest(ApiError.Codes.InvalidArgument, "body must be {node_id, key (percent-encoded)}");
            }
            Objects.MarkCorrupt(key, r.NodeId);
            return Results.Json(new { recorded = true });
        });
        var lease = new ClusterJobLease(Store, Options.DataPath.CoordinatorId, () => Url, app.Logger);
        var jobs = new OpsJobs(Store, Nodes, _http, Path.Combine(Options.DbDir, "ops-journal"), lease, app.Logger);
        jobs.Map(app);
        ClusterGauges.Observe(Objects.Metrics, Store, Nodes, jobs);
        app.MapMetrics(Objects.Metrics, Options.Secret);
        app.MapConsole();
        app.MapGet("/", (Func<HttpContext, Task<IResult>>)(ctx => ListingEndpoint.IsListing(ctx) ? Task.FromResult(ListingEndpoint.Handle(ctx, Store)) : _native.HandleAsync(ctx)));

        app.MapMethods("/{**key}", ["GET", "HEAD", "PUT", "DELETE"], (Func<HttpContext, Task<IResult>>)_native.HandleAsync);
        app.MapFallback((HttpContext ctx) => ApiError.Result(
            ctx.Request.Path.StartsWithSegments("/admin") || ctx.Request.Path.StartsWithSegments("/internal") ? 404 : 405,
            ApiError.Codes.NotFound,
            $"no route for {ctx.Request.Method} {ctx.Request.Path}"));
    }

    private static async Task<NodeAnnounce?> ReadAnnounceAsync(HttpContext ctx)
    {
        try
        {
            var a = await ctx.Request.ReadFromJsonAsync<NodeAnnounce>(ctx.RequestAborted);
            return a is null || string.IsNullOrWhiteSpace(a.NodeId) || !Uri.TryCreate(a.Url, UriKind.Absolute, out _) ? null : a;
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
    }
}
