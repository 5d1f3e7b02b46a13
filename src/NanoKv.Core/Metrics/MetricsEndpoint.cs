using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace NanoKv.Core.Metrics;

/// <summary>GET /metrics in the Prometheus text format, guarded by the cluster secret like /admin when one is set.</summary>
public static class MetricsEndpoint
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    public static void MapMetrics(this WebApplication app, ServerMetrics metrics, string? secret)
    {
        app.MapGet("/metrics", async (HttpContext ctx) =>
        {
            if (!string.IsNullOrEmpty(secret) && !IsAuthorized(ctx, secret))
            {
                await ApiError.Result(StatusCodes.Status401Unauthorized, ApiError.Codes.Unauthorized,
                    $"/metrics needs the cluster secret ({ClusterAuth.Header} header or Authorization: Bearer SECRET)").ExecuteAsync(ctx);
                return;
            }
            ctx.Response.ContentType = ContentType;
            await metrics.Registry.CollectAndExportAsTextAsync(ctx.Response.Body, ctx.RequestAborted);
        });
    }

    /// <summary>The secret header, or a bearer token (what Prometheus' `authorization: credentials:` sends).</summary>
    private static bool IsAuthorized(HttpContext ctx, string secret)
    {
        var auth = ctx.Request.Headers.Authorization.ToString();
        if (auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
                System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(auth[7..].Trim())),
                System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(secret)));
        }
        return ClusterAuth.HasSecret(ctx, secret);
    }
}
