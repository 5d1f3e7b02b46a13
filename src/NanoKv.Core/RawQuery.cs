using Microsoft.AspNetCore.Http;

namespace NanoKv.Core;

/// <summary>Query parameters read from the raw target, for values that carry percent-encoded key bytes.</summary>
public static class RawQuery
{
    /// <summary>The undecoded value of a query parameter, or null.</summary>
    public static string? Get(HttpContext ctx, string name)
    {
        var raw = ServerHost.RawTarget(ctx);
        var q = raw.IndexOf('?', StringComparison.Ordinal);
        if (q < 0)
        {
            return null;
        }
        foreach (var part in raw[(q + 1)..].Split('&'))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            var n = eq < 0 ? part : part[..eq];
            if (n == name)
            {
                return eq < 0 ? "" : part[(eq + 1)..];
            }
        }
        return null;
    }

    /// <summary>Decodes the key in a query parameter; false with an error sentence when missing or malformed.</summary>
    public static bool TryGetKey(HttpContext ctx, string name, out byte[] key, out string error)
    {
        var v = Get(ctx, name);
        if (v is null)
        {
            key = [];
            error = $"missing query parameter '{name}'";
            return false;
        }
        return KeyCodec.TryDecode(v, out key, out error, KeyCodec.MaxInternalKeyBytes);
    }
}
