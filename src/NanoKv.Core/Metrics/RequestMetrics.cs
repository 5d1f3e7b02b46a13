using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace NanoKv.Core.Metrics;

/// <summary>Counts and times every request by its route pattern (bounded label values, never the raw path).</summary>
public static class RequestMetrics
{
    /// <summary>Register first, before the JSON error handler, so the status recorded is the one the client saw.</summary>
    /// <param name="unrouted">route label of requests no endpoint matched (the S3 listener routes by itself: "s3")</param>
    public static void UseRequestMetrics(this WebApplication app, ServerMetrics metrics, string unrouted = "unmatched")
    {
        app.Use(async (ctx, next) =>
        {
            var started = Stopwatch.GetTimestamp();
            try
            {
                await next(ctx);
            }
            finally
            {
                var route = RouteOf(ctx, unrouted);
                var method = ctx.Request.Method;
                metrics.Requests.WithLabels(route, method, StatusText(ctx.Response.StatusCode)).Inc();
                metrics.Duration.WithLabels(route, method).Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
                if (ctx.Request.ContentLength is > 0 and long inBytes)
                {
                    metrics.BytesIn.WithLabels(route).Inc(inBytes);
                }
                if (ctx.Response.ContentLength is > 0 and long outBytes && !HttpMethods.IsHead(method))
                {
                    metrics.BytesOut.WithLabels(route).Inc(outBytes);
                }
            }
        });
    }

    private static string RouteOf(HttpContext ctx, string unrouted) => ctx.GetEndpoint() is RouteEndpoint { RoutePattern.RawText: { } raw }
        ? raw switch
        {
            "/{**key}" => "/{key}",
            _ when raw.StartsWith("{*", StringComparison.Ordinal) => unrouted, // the fallback route
            _ => raw,
        }
        : unrouted;

    // Cached strings for the common codes: no allocation per request.
    private static readonly string[] Codes = [.. Enumerable.Range(0, 600).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture))];

    private static string StatusText(int status) => status is >= 0 and < 600 ? Codes[status] : "other";
}
