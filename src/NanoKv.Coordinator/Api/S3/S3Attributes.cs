using System.Text;
using NanoKv.Metadata;
using NanoKv.S3;

namespace NanoKv.Coordinator.Api.S3;

/// <summary>The HTTP attributes S3 stores with an object (Content-Type and friends, x-amz-meta-*), in and out.</summary>
public static class S3Attributes
{
    /// <summary>S3's limit on user metadata (names and values, UTF-8).</summary>
    public const int MaxUserMetaBytes = 2048;

    public const string DefaultContentType = "binary/octet-stream";

    public static ObjectAttributes FromRequest(S3Context s3)
    {
        var meta = new Dictionary<string, string>(StringComparer.Ordinal);
        var total = 0;
        foreach (var (name, value) in s3.Request.Headers)
        {
            if (!name.StartsWith("x-amz-meta-", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            var key = name["x-amz-meta-".Length..].ToLowerInvariant();
            var v = value.ToString();
            total += Encoding.UTF8.GetByteCount(key) + Encoding.UTF8.GetByteCount(v);
            meta[key] = v;
        }
        if (total > MaxUserMetaBytes)
        {
            throw new S3Exception(S3ErrorCode.MetadataTooLarge, $"Your metadata headers exceed the maximum allowed metadata size ({MaxUserMetaBytes} bytes).");
        }
        return new ObjectAttributes
        {
            ContentType = s3.Header("Content-Type"),
            CacheControl = s3.Header("Cache-Control"),
            ContentDisposition = s3.Header("Content-Disposition"),
            ContentEncoding = StripAwsChunked(s3.Header("Content-Encoding")),
            ContentLanguage = s3.Header("Content-Language"),
            Expires = s3.Header("Expires"),
            UserMeta = meta,
        };
    }

    /// <summary>aws-chunked is the transfer framing, not the object's encoding: S3 does not store it.</summary>
    private static string? StripAwsChunked(string? v)
    {
        if (v is null)
        {
            return null;
        }
        var rest = v.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Where(t => !t.Equals("aws-chunked", StringComparison.OrdinalIgnoreCase));
        var joined = string.Join(",", rest);
        return joined.Length == 0 ? null : joined;
    }

    /// <summary>Writes the stored attributes, with response-* query overrides (GetObject) applied.</summary>
    public static void Write(S3Context s3, ObjectAttributes a, bool withOverrides)
    {
        var h = s3.Response.Headers;
        h.ContentType = Override(s3, withOverrides, "response-content-type") ?? a.ContentType ?? DefaultContentType;
        Set("Cache-Control", Override(s3, withOverrides, "response-cache-control") ?? a.CacheControl);
        Set("Content-Disposition", Override(s3, withOverrides, "response-content-disposition") ?? a.ContentDisposition);
        Set("Content-Encoding", Override(s3, withOverrides, "response-content-encoding") ?? a.ContentEncoding);
        Set("Content-Language", Override(s3, withOverrides, "response-content-language") ?? a.ContentLanguage);
        Set("Expires", Override(s3, withOverrides, "response-expires") ?? a.Expires);
        foreach (var (k, v) in a.UserMeta)
        {
            h["x-amz-meta-" + k] = HeaderValue(v);
        }

        void Set(string name, string? value)
        {
            if (value is not null)
            {
                h[name] = HeaderValue(value);
            }
        }
    }

    /// <summary>HTTP header values are ASCII: a value with anything else goes out RFC 2047-encoded, as S3 answers
    /// (sending it raw would fail the whole response).</summary>
    public static string HeaderValue(string v) =>
        HeaderText.IsSendable(v) ? v : "=?UTF-8?B?" + Convert.ToBase64String(Encoding.UTF8.GetBytes(v)) + "?=";

    private static string? Override(S3Context s3, bool enabled, string param) => enabled ? s3.Q(param) : null;
}
