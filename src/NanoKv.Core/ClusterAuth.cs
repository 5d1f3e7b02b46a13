using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace NanoKv.Core;

/// <summary>Shared cluster secret guarding /internal/* and /admin/* between nodes.</summary>
public static class ClusterAuth
{
    public const string Header = "X-NanoKv-Secret";
    public const string EnvVar = "NANOKV_SECRET";

    /// <summary>Refuses internal/admin calls that lack the secret (401), compared in constant time. No secret: open (local dev).</summary>
    public static void UseClusterSecret(this WebApplication app, string? secret)
    {
        if (string.IsNullOrEmpty(secret))
        {
            return;
        }
        var expected = SHA256.HashData(Encoding.UTF8.GetBytes(secret));
        app.Use(async (ctx, next) =>
        {
            var path = ctx.Request.Path.Value ?? "";
            if (path.StartsWith("/internal/", StringComparison.Ordinal) || path.StartsWith("/admin/", StringComparison.Ordinal))
            {
                var given = SHA256.HashData(Encoding.UTF8.GetBytes(ctx.Request.Headers[Header].ToString()));
                if (!CryptographicOperations.FixedTimeEquals(expected, given))
                {
                    await ApiError.Result(StatusCodes.Status401Unauthorized, ApiError.Codes.Unauthorized, $"missing or wrong {Header} header").ExecuteAsync(ctx);
                    return;
                }
            }
            await next(ctx);
        });
    }

    /// <summary>A fresh random secret for `coord dev`.</summary>
    public static string Generate() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
}
