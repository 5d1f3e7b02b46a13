using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace NanoKv.Core;

/// <summary>Kestrel setup shared by the coordinator and the volume: binding, limits, telemetry, JSON errors.</summary>
public static class ServerHost
{
    /// <summary>Largest object accepted (the sweet spot ends at 1 GB; allow headroom).</summary>
    public const long MaxObjectBytes = 5L * 1024 * 1024 * 1024;

    public static readonly ActivitySource Activity = new("NanoKv");
    public static readonly Meter Meter = new("NanoKv");

    /// <summary>Object requests by method and status code.</summary>
    public static readonly Counter<long> Requests = Meter.CreateCounter<long>("nanokv.requests", description: "object requests by method and status");

    /// <summary>Object request latency in milliseconds (PUT includes the replicated, fsync'd write).</summary>
    public static readonly Histogram<double> RequestDuration = Meter.CreateHistogram<double>("nanokv.request.duration", unit: "ms");

    /// <summary>A slim builder listening on host:port (127.0.0.1 unless told otherwise; port 0 picks a free one).</summary>
    /// <param name="tlsCert">PEM certificate file; with <paramref name="tlsKey"/>, serve HTTPS instead of HTTP</param>
    /// <param name="tlsKey">PEM private key file of the certificate</param>
    /// <param name="rawResponses">Count and gate the bytes of each plain-HTTP connection (<see cref="ResponseGate"/>), so responses
    /// written into its socket behind Kestrel's back keep the connection alive</param>
    public static WebApplicationBuilder CreateBuilder(string serviceName, string host, int port, LogLevel logLevel, string? tlsCert = null, string? tlsKey = null, bool rawResponses = false)
    {
        if ((tlsCert is null) != (tlsKey is null))
        {
            // Half a TLS configuration must not quietly fall back to plain HTTP.
            throw new ArgumentException("--tls-cert and --tls-key must be given together");
        }
        // No configuration reload: it watches the content root recursively with inotify, and a volume's data
        // under the working directory (`coord dev`'s ./nanokv-data) then fed every file it wrote through a
        // watcher (19 % of a volume's CPU in a small-PUT profile, ~2,400 watches per process). The content
        // root is the install folder, so a stray appsettings.json in the working directory configures nothing.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ApplicationName = serviceName,
            ContentRootPath = AppContext.BaseDirectory,
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
        });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        builder.Logging.SetMinimumLevel(logLevel);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting", LogLevel.Warning);
        builder.Logging.AddFilter("System.Net.Http", LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(ParseHost(host), port, listen =>
            {
                if (tlsCert is not null)
                {
                    listen.UseHttps(System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(tlsCert, tlsKey));
                }
                else if (rawResponses)
                {
                    ResponseGate.Install(listen);
                }
            });
            k.AddServerHeader = false;
            // Header size/count and the minimum body data rate stay at Kestrel's protective defaults;
            // only object/upload endpoints lift the body size cap (see AllowLargeBody).
            k.Limits.MaxRequestHeadersTotalSize = 32 * 1024;
            k.Limits.MaxRequestLineSize = 16 * 1024;
        });
        // Receive straight into a buffer instead of a zero-byte "wait for data" read before each one: bodies
        // stream in 4 KiB socket reads, so this halves the receive syscalls of a PUT (4 KiB per idle connection).
        builder.WebHost.UseSockets(o => o.WaitForDataBeforeAllocatingBuffer = false);
        if (LargeBlockMemoryPoolFactory.BlockSize > 4096)
        {
            // Kestrel takes its transport pools from this factory: 64 KiB receives instead of 4 KiB.
            builder.Services.AddSingleton<Microsoft.AspNetCore.Connections.IMemoryPoolFactory<byte>, LargeBlockMemoryPoolFactory>();
        }
        var otlp = Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT");
        if (!string.IsNullOrEmpty(otlp))
        {
            builder.Services.AddOpenTelemetry()
                .WithTracing(t => t.AddSource(Activity.Name).AddAspNetCoreInstrumentation().AddHttpClientInstrumentation().AddOtlpExporter())
                .WithMetrics(m => m.AddMeter(Meter.Name).AddAspNetCoreInstrumentation().AddHttpClientInstrumentation().AddRuntimeInstrumentationIfAny().AddOtlpExporter());
        }
        return builder;
    }

    /// <summary>Turns unhandled exceptions and Kestrel's bad-request errors into JSON bodies; unknown routes into JSON 404s.</summary>
    public static void UseJsonErrors(this WebApplication app)
    {
        app.Use(async (ctx, next) =>
        {
            try
            {
                await next(ctx);
            }
            catch (BadHttpRequestException ex) when (!ctx.Response.HasStarted)
            {
                await ApiError.Result(ex.StatusCode, ApiError.Codes.InvalidArgument, ex.Message).ExecuteAsync(ctx);
            }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
            {
                // client went away; nothing to answer
            }
            catch (Exception ex) when (!ctx.Response.HasStarted)
            {
                app.Logger.LogError(ex, "unhandled error on {Method} {Path}", ctx.Request.Method, ctx.Request.Path);
                await ApiError.Result(StatusCodes.Status500InternalServerError, ApiError.Codes.Internal, ex.Message).ExecuteAsync(ctx);
            }
        });
    }

    /// <summary>Lifts Kestrel's 30 MB default body cap for this request only (object and upload endpoints).</summary>
    public static void AllowLargeBody(HttpContext ctx)
    {
        var f = ctx.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (f is { IsReadOnly: false })
        {
            f.MaxRequestBodySize = MaxObjectBytes;
        }
    }

    /// <summary>The raw request target, undecoded and with dot segments intact.</summary>
    public static string RawTarget(HttpContext ctx) =>
        ctx.Features.Get<IHttpRequestFeature>()?.RawTarget ?? ctx.Request.Path.Value ?? "/";

    /// <summary>
    /// True when the raw target is literally this route. "/%68ealthz" routes like "/healthz" but was
    /// written as a key, so it goes to the object route (which refuses the reserved key clearly).
    /// </summary>
    public static bool IsExactRoute(HttpContext ctx, string path) => RawPath(ctx) == path;

    /// <summary>The raw request target without its query: what the client wrote, before Kestrel decoded it.</summary>
    public static string RawPath(HttpContext ctx)
    {
        var raw = RawTarget(ctx);
        var q = raw.IndexOf('?', StringComparison.Ordinal);
        return q < 0 ? raw : raw[..q];
    }

    /// <summary>The address Kestrel actually bound (resolves port 0).</summary>
    public static Uri BoundAddress(WebApplication app)
    {
        var addrs = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        return new Uri(addrs.First().Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
    }

    /// <summary>The address a --host value binds (localhost, *, 0.0.0.0 or a literal address).</summary>
    public static IPAddress ParseHost(string host) =>
        host is "localhost" ? IPAddress.Loopback : host is "*" or "0.0.0.0" ? IPAddress.Any : IPAddress.Parse(host);

    private static MeterProviderBuilder AddRuntimeInstrumentationIfAny(this MeterProviderBuilder m) => m.AddMeter("System.Runtime");
}
