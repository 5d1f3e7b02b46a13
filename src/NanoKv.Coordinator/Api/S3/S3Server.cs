using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using NanoKv.Coordinator.Core;
using NanoKv.Core;
using NanoKv.Core.Metrics;
using NanoKv.Metadata;
using NanoKv.S3;
using NanoKv.S3.SigV4;
using NanoKv.S3.Xml;

namespace NanoKv.Coordinator.Api.S3;

/// <summary>Settings of the S3 listener (`coord serve --s3-port/--s3-host/--s3-users`).</summary>
public sealed record S3Options
{
    public const string EnvUsers = "NANOKV_S3_USERS";

    public string Host { get; init; } = "127.0.0.1";

    public int Port { get; init; } = 9000;

    public required S3Users Users { get; init; }

    /// <summary>What GetBucketLocation answers; clients may sign for any region.</summary>
    public string Region { get; init; } = "us-east-1";

    /// <summary>Host names under which "bucket.NAME" means virtual-host addressing (path style works always).</summary>
    public IReadOnlyList<string> Domains { get; init; } = ["localhost"];
}

/// <summary>
/// The S3 endpoint: a second Kestrel listener over the same <see cref="ObjectStore"/> as the native API. Every
/// request is SigV4-verified, routed by method, bucket, key and sub-resource, and answered with S3 headers and XML;
/// every response carries x-amz-request-id. Replication, placement and commit are the store's.
/// </summary>
public sealed class S3Server : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly S3Router _router;

    private S3Server(WebApplication app, S3Router router)
    {
        _app = app;
        _router = router;
    }

    public string Url { get; private set; } = "";

    public static S3Server Create(S3Options options, ObjectStore store, string? tlsCert, string? tlsKey, LogLevel logLevel)
    {
        if (options.Users.Count == 0)
        {
            throw new ArgumentException("the S3 listener needs at least one user (--s3-users or NANOKV_S3_USERS); anonymous access is not offered");
        }
        var builder = ServerHost.CreateBuilder("nanokv-s3", options.Host, options.Port, logLevel, tlsCert, tlsKey, rawResponses: true);
        var app = builder.Build();
        var router = new S3Router(store, options, new SigV4Verifier(options.Users), app.Logger);
        var server = new S3Server(app, router);
        app.UseRequestMetrics(store.Metrics, "s3");
        app.Run(server.HandleAsync);
        return server;
    }

    public async Task StartAsync(CancellationToken ct)
    {
        await _app.StartAsync(ct);
        Url = ServerHost.BoundAddress(_app).ToString().TrimEnd('/');
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
    }

    internal static S3Exception MetaDown(MetaStoreUnavailableException e) =>
        new(S3ErrorCode.ServiceUnavailable, $"The metadata database is unavailable; retry shortly. ({e.Message})");

    /// <summary>Request id on every response; S3 errors as XML; anything unexpected as InternalError.</summary>
    private async Task HandleAsync(HttpContext ctx)
    {
        var requestId = Convert.ToHexString(RandomNumberGenerator.GetBytes(8));
        ctx.Response.Headers["x-amz-request-id"] = requestId;
        ctx.Response.Headers["x-amz-id-2"] = requestId;
        ctx.Response.Headers.Server = "NanoKV";
        var s3 = new S3Context(ctx, requestId);
        try
        {
            await _router.HandleAsync(s3);
        }
        catch (S3Exception e)
        {
            await s3.WriteErrorAsync(e);
        }
        catch (BadHttpRequestException e) when (!ctx.Response.HasStarted)
        {
            await s3.WriteErrorAsync(new S3Exception(e.StatusCode == 413 ? S3ErrorCode.EntityTooLarge : S3ErrorCode.InvalidRequest, e.Message));
        }
        catch (MetaStoreUnavailableException e) when (!ctx.Response.HasStarted)
        {
            // The metadata database is down past its retry time box: a retryable 503, as S3 answers when it is overloaded.
            _app.Logger.LogWarning("metadata database unavailable on S3 {Method} {Target}: {Error}", ctx.Request.Method, ServerHost.RawTarget(ctx), e.Message);
            await s3.WriteErrorAsync(MetaDown(e));
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nothing to answer.
        }
        catch (Exception e) when (!ctx.Response.HasStarted)
        {
            _app.Logger.LogError(e, "S3 {Method} {Target} failed", ctx.Request.Method, ServerHost.RawTarget(ctx));
            await s3.WriteErrorAsync(new S3Exception(S3ErrorCode.InternalError, "We encountered an internal error. Please try again."));
        }
    }
}
