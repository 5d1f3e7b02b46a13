using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using NanoKv.Core;

namespace NanoKv.Coordinator;

/// <summary>
/// Optional keys for the public object API: read-write keys may PUT/DELETE/GET, read-only keys may GET/HEAD.
/// Off when no key is configured (local dev). Sent as <c>Authorization: Bearer KEY</c> or <c>X-NanoKv-Key: KEY</c>.
/// </summary>
public sealed class AccessKeys
{
    public const string Header = "X-NanoKv-Key";
    public const string EnvRw = "NANOKV_ACCESS_KEYS_RW";
    public const string EnvRo = "NANOKV_ACCESS_KEYS_RO";

    private readonly List<byte[]> _rw;
    private readonly List<byte[]> _ro;

    public AccessKeys(IEnumerable<string> readWrite, IEnumerable<string> readOnly)
    {
        _rw = readWrite.Where(k => k.Length > 0).Select(Hash).ToList();
        _ro = readOnly.Where(k => k.Length > 0).Select(Hash).ToList();
    }

    public bool Enabled => _rw.Count + _ro.Count > 0;

    /// <summary>Guards every route except /healthz, /metrics, the console's static files (/ui) and the cluster-secret routes (/admin, /internal).</summary>
    public void Use(WebApplication app)
    {
        if (!Enabled)
        {
            return;
        }
        app.Use(async (ctx, next) =>
        {
            // The raw path, not Request.Path: "/x/../healthz" routes like "/healthz" but is the object key
            // "x/../healthz" (served by the object route), and must not skip the key check.
            var path = ServerHost.RawPath(ctx);
            if (path.StartsWith("/admin/", StringComparison.Ordinal) || path.StartsWith("/internal/", StringComparison.Ordinal)
                || path is "/healthz" or "/readyz" or "/metrics" or "/ui" || (path.StartsWith("/ui/", StringComparison.Ordinal) && HttpMethods.IsGet(ctx.Request.Method)))
            {
                await next(ctx);
                return;
            }
            var given = Presented(ctx.Request);
            if (given is null)
            {
                await ApiError.Result(401, ApiError.Codes.Unauthorized, $"an access key is required (Authorization: Bearer KEY or {Header})").ExecuteAsync(ctx);
                return;
            }
            var h = Hash(given);
            var rw = Matches(_rw, h);
            var ro = Matches(_ro, h);
            var write = !(HttpMethods.IsGet(ctx.Request.Method) || HttpMethods.IsHead(ctx.Request.Method));
            if (!rw && !ro)
            {
                await ApiError.Result(401, ApiError.Codes.Unauthorized, "unknown access key").ExecuteAsync(ctx);
                return;
            }
            if (write && !rw)
            {
                await ApiError.Result(403, ApiError.Codes.Forbidden, "this access key is read-only").ExecuteAsync(ctx);
                return;
            }
            await next(ctx);
        });
    }

    private static string? Presented(HttpRequest req)
    {
        var auth = req.Headers.Authorization.ToString();
        if (auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return auth[7..].Trim();
        }
        var key = req.Headers[Header].ToString();
        return key.Length > 0 ? key : null;
    }

    /// <summary>Compares against every key without an early exit, so timing says nothing about which matched.</summary>
    private static bool Matches(List<byte[]> keys, byte[] given)
    {
        var hit = false;
        foreach (var k in keys)
        {
            hit |= CryptographicOperations.FixedTimeEquals(k, given);
        }
        return hit;
    }

    private static byte[] Hash(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key));
}
