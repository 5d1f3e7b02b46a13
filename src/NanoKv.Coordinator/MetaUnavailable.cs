using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Coordinator;

/// <summary>The metadata database unreachable (past its retry time box) is a 503 the client may retry, not a 500.</summary>
public static class MetaUnavailable
{
    public static void UseMetaUnavailable(this WebApplication app) => app.Use(async (ctx, next) =>
    {
        try
        {
            await next(ctx);
        }
        catch (MetaStoreUnavailableException ex) when (!ctx.Response.HasStarted)
        {
            app.Logger.LogWarning("metadata database unavailable on {Method} {Path}: {Error}", ctx.Request.Method, ctx.Request.Path, ex.Message);
            ctx.Response.Headers.RetryAfter = "1";
            await ApiError.Unavailable(ApiError.Codes.Unavailable, ex.Message).ExecuteAsync(ctx);
        }
    });
}
