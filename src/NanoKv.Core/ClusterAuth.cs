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
        app.Use(async (ctx, next) =>
        {
            var path = ctx.Request.Path.Value ?? "";
            if (path.StartsWith("/internal/", StringComparison.Ordinal) || path.StartsWith("/admin/", StringComparison.Ordinal))
            {
                if (!HasSecret(ctx, secret))
                {
                    await ApiError.Result(StatusCodes.Status401Unauthorized, ApiError.Codes.Unauthorized, $"missing or wrong {Header} header").ExecuteAsync(ctx);
                    return;
                }
            }
            await next(ctx);
        });
    }

    /// <summary>True when the request carries the cluster secret (constant-time comparison).</summary>
    public static bool HasSecret(HttpContext ctx, string secret) => HasSecret(ctx.Request.Headers[Header].ToString(), secret);

    /// <summary>True when the given header value is the cluster secret (constant-time comparison).</summary>
    public static bool HasSecret(string given, string secret) =>
        CryptographicOperations.FixedTimeEquals(
            SHA256.HashData(Encoding.UTF8.GetBytes(secret)),
            SHA256.HashData(Encoding.UTF8.GetBytes(given)));

    /// <summary>
    /// Signature of a presigned volume GET: HMAC-SHA256(secret, encoded key + expiry). The coordinator puts it
    /// on redirects, so clients can follow them while volumes refuse unsigned reads when a secret is set.
    /// </summary>
    public static string Sign(string secret, string encodedKey, long expiresUnix) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes($"{encodedKey}\n{expiresUnix}")));

    /// <summary>Checks exp/sig query parameters of a presigned GET.</summary>
    public static bool HasValidSignature(HttpContext ctx, string secret, string encodedKey) =>
        HasValidSignature(ctx.Request.Query["exp"].ToString(), ctx.Request.Query["sig"].ToString(), secret, encodedKey);

    /// <summary>Checks the exp and sig values of a presigned GET.</summary>
    public static bool HasValidSignature(string? expires, string? signature, string secret, string encodedKey)
    {
        if (!long.TryParse(expires, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var exp)
            || exp < DateTimeOffset.UtcNow.ToUnixTimeSeconds())
        {
            return false;
        }
        var given = Encoding.ASCII.GetBytes(signature ?? "");
        var want = Encoding.ASCII.GetBytes(Sign(secret, encodedKey, exp));
        return CryptographicOperations.FixedTimeEquals(want, given);
    }

    /// <summary>A fresh random secret for `coord dev`.</summary>
    public static string Generate() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
}
