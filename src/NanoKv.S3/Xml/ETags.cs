using System.Security.Cryptography;

namespace NanoKv.S3.Xml;

/// <summary>S3 ETags: hex MD5 for single-part objects, MD5 of the concatenated part MD5s plus "-N" for multipart.</summary>
public static class ETags
{
    public static string Quote(string etag) => etag.StartsWith('"') ? etag : "\"" + etag + "\"";

    public static string Unquote(string etag)
    {
        var e = etag.Trim();
        if (e.StartsWith("W/", StringComparison.Ordinal))
        {
            e = e[2..];
        }
        return e.Length >= 2 && e[0] == '"' && e[^1] == '"' ? e[1..^1] : e;
    }

    public static string FromMd5(ReadOnlySpan<byte> md5) => Convert.ToHexStringLower(md5);

    /// <summary>md5(concat(binary md5 of each part)) + "-" + count, from the parts' hex ETags in order.</summary>
    public static string Multipart(IReadOnlyList<string> partETags)
    {
        var all = new byte[16 * partETags.Count];
        for (var i = 0; i < partETags.Count; i++)
        {
            var hex = Unquote(partETags[i]);
            if (hex.Length != 32 || !Convert.FromHexString(hex).AsSpan().TryCopyTo(all.AsSpan(i * 16)))
            {
                throw new S3Exception(S3ErrorCode.InvalidPart, $"Part ETag '{hex}' is not an MD5.");
            }
        }
        return Convert.ToHexStringLower(MD5.HashData(all)) + "-" + partETags.Count;
    }

    /// <summary>If-Match / If-None-Match: "*" or a comma-separated list of (possibly weak, quoted) ETags.</summary>
    public static bool Matches(string headerValue, string etag)
    {
        foreach (var candidate in headerValue.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (candidate == "*" || Unquote(candidate) == Unquote(etag))
            {
                return true;
            }
        }
        return false;
    }
}
