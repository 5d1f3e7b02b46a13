using System.Buffers;
using System.Text;

namespace NanoKv.S3.SigV4;

/// <summary>URI encoding exactly as SigV4 canonicalisation wants it: every byte except A-Z a-z 0-9 - . _ ~ is %XX (upper hex).</summary>
public static class AwsUri
{
    private static readonly SearchValues<char> Unreserved =
        SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~");

    /// <summary>Encodes <paramref name="value"/>; '/' is kept when <paramref name="keepSlash"/> (object key paths).</summary>
    public static string Encode(string value, bool keepSlash)
    {
        if (value.AsSpan().IndexOfAnyExcept(Unreserved) < 0)
        {
            return value;
        }
        var sb = new StringBuilder(value.Length + 16);
        Span<byte> utf8 = stackalloc byte[4];
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (Unreserved.Contains(c) || (keepSlash && c == '/'))
            {
                sb.Append(c);
                continue;
            }
            // Surrogate pairs encode as one 4-byte UTF-8 sequence.
            var len = char.IsHighSurrogate(c) && i + 1 < value.Length
                ? Encoding.UTF8.GetBytes(value.AsSpan(i++, 2), utf8)
                : Encoding.UTF8.GetBytes(value.AsSpan(i, 1), utf8);
            for (var b = 0; b < len; b++)
            {
                sb.Append('%').Append(HexUpper[utf8[b] >> 4]).Append(HexUpper[utf8[b] & 0xF]);
            }
        }
        return sb.ToString();
    }

    private const string HexUpper = "0123456789ABCDEF";

    /// <summary>Percent-decodes UTF-8; malformed escapes are kept literally. '+' becomes a space only when <paramref name="plusIsSpace"/> (query strings).</summary>
    public static string Decode(string value, bool plusIsSpace)
    {
        if (value.IndexOf('%', StringComparison.Ordinal) < 0 && !(plusIsSpace && value.Contains('+', StringComparison.Ordinal)))
        {
            return value;
        }
        var bytes = new List<byte>(value.Length);
        var tmp = new byte[4];
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (c == '%' && i + 2 < value.Length && Uri.IsHexDigit(value[i + 1]) && Uri.IsHexDigit(value[i + 2]))
            {
                bytes.Add((byte)Convert.ToInt32(value.Substring(i + 1, 2), 16));
                i += 2;
            }
            else if (c == '+' && plusIsSpace)
            {
                bytes.Add((byte)' ');
            }
            else
            {
                var n = char.IsHighSurrogate(c) && i + 1 < value.Length
                    ? Encoding.UTF8.GetBytes(value.AsSpan(i++, 2), tmp)
                    : Encoding.UTF8.GetBytes(value.AsSpan(i, 1), tmp);
                bytes.AddRange(tmp.AsSpan(0, n));
            }
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    /// <summary>Splits a raw query string (without '?') into decoded name/value pairs, in order; "uploads" yields ("uploads", "").</summary>
    public static List<KeyValuePair<string, string>> ParseQuery(string rawQuery)
    {
        var list = new List<KeyValuePair<string, string>>();
        var q = rawQuery.StartsWith('?') ? rawQuery[1..] : rawQuery;
        foreach (var part in q.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            var name = eq < 0 ? part : part[..eq];
            var value = eq < 0 ? "" : part[(eq + 1)..];
            list.Add(new(Decode(name, true), Decode(value, true)));
        }
        return list;
    }
}
