using System.Text;
using NanoKv.Core.Hashing;

namespace NanoKv.Core;

/// <summary>Object keys: arbitrary bytes, percent-encoded in URLs and in file names.</summary>
public static class KeyCodec
{
    /// <summary>Longest key accepted, in raw bytes.</summary>
    public const int MaxKeyBytes = 1024;

    /// <summary>Longest key between nodes: internal blob keys wrap a 1024-byte S3 key with bucket and version.</summary>
    public const int MaxInternalKeyBytes = MaxKeyBytes + 128;

    /// <summary>Encoded names longer than this are stored under a hashed name plus a sidecar (ext4 caps names at 255 bytes).</summary>
    public const int MaxPlainFileName = 200;

    /// <summary>Prefix of hashed file names; '@' is always percent-encoded in plain names, so the two never collide.</summary>
    public const char HashedPrefix = '@';

    /// <summary>
    /// Takes the key from a raw request target ("/my%2Ffile.bin?x=1"). The raw target is used, not
    /// HttpRequest.Path, because Kestrel resolves "." and ".." segments there and "a/../b" must stay its own key.
    /// </summary>
    public static bool TryParseTarget(string rawTarget, out byte[] key, out string error, int maxBytes = MaxKeyBytes)
    {
        var path = rawTarget;
        var q = path.IndexOf('?', StringComparison.Ordinal);
        if (q >= 0)
        {
            path = path[..q];
        }
        if (path.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || path.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            // absolute-form request target: drop scheme and authority
            var slash = path.IndexOf('/', path.IndexOf("//", StringComparison.Ordinal) + 2);
            path = slash < 0 ? "/" : path[slash..];
        }
        if (path.StartsWith('/'))
        {
            path = path[1..];
        }
        if (!TryDecode(path, out key, out error, maxBytes))
        {
            return false;
        }
        foreach (var reserved in ReservedKeys)
        {
            if (key.AsSpan().SequenceEqual(Encoding.ASCII.GetBytes(reserved)))
            {
                error = $"the key '{reserved}' is reserved for the {reserved} endpoint";
                return false;
            }
        }
        return true;
    }

    /// <summary>Percent-decodes a key; rejects empty, malformed and over-long keys.</summary>
    public static bool TryDecode(string encoded, out byte[] key, out string error, int maxBytes = MaxKeyBytes)
    {
        key = [];
        if (encoded.Length == 0)
        {
            error = "key is empty";
            return false;
        }
        var buf = new List<byte>(encoded.Length);
        Span<byte> utf8 = stackalloc byte[4];
        for (var i = 0; i < encoded.Length; i++)
        {
            var c = encoded[i];
            if (c == '%')
            {
                if (i + 2 >= encoded.Length || !IsHex(encoded[i + 1]) || !IsHex(encoded[i + 2]))
                {
                    error = $"invalid percent-encoding at offset {i}";
                    return false;
                }
                buf.Add((byte)((HexVal(encoded[i + 1]) << 4) | HexVal(encoded[i + 2])));
                i += 2;
            }
            else if (c < 0x80)
            {
                buf.Add((byte)c);
            }
            else
            {
                // Non-ASCII characters that reached us unencoded are taken as UTF-8.
                var n = Encoding.UTF8.GetBytes(encoded.AsSpan(i, char.IsHighSurrogate(c) && i + 1 < encoded.Length ? 2 : 1), utf8);
                for (var j = 0; j < n; j++)
                {
                    buf.Add(utf8[j]);
                }
                if (char.IsHighSurrogate(c))
                {
                    i++;
                }
            }
            if (buf.Count > maxBytes)
            {
                error = $"key is longer than {maxBytes} bytes";
                return false;
            }
        }
        key = [.. buf];
        error = "";
        return true;
    }

    /// <summary>Percent-encodes every byte outside [A-Za-z0-9-_.~]; a leading '.' is encoded too so no name is ".", ".." or hidden.</summary>
    public static string Encode(ReadOnlySpan<byte> key)
    {
        var sb = new StringBuilder(key.Length + 8);
        for (var i = 0; i < key.Length; i++)
        {
            var b = key[i];
            var plain = (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '-' || b == '_' || b == '~' || (b == '.' && i > 0);
            if (plain)
            {
                sb.Append((char)b);
            }
            else
            {
                sb.Append('%').Append(HexUpper[b >> 4]).Append(HexUpper[b & 0xF]);
            }
        }
        return sb.ToString();
    }

    /// <summary>The key as a URL path segment.</summary>
    public static string UrlPath(ReadOnlySpan<byte> key) => Encode(key);

    /// <summary>
    /// Keys that would shadow a top-level route. URL normalisers (System.Uri among them) unescape "%68" to
    /// "h", so no encoding of these keys is safe to send: they are refused instead.
    /// </summary>
    public static readonly string[] ReservedKeys = ["healthz", "readyz", "metrics", "ui"];

    /// <summary>Relative path of a blob: "aa/bb/name", where aa/bb are the first two bytes of BLAKE3(key).</summary>
    public static string BlobRelativePath(ReadOnlySpan<byte> key)
    {
        var hash = Hash(key);
        return Path.Combine(hash[..2], hash[2..4], FileName(key, hash));
    }

    /// <summary>The file name for a key: its encoding, or "@" + BLAKE3 hex when the encoding is too long for a file name.</summary>
    public static string FileName(ReadOnlySpan<byte> key) => FileName(key, Hash(key));

    /// <summary>True when the key is stored under a hashed name and needs a ".key" sidecar.</summary>
    public static bool IsHashedName(string fileName) => fileName.Length > 0 && fileName[0] == HashedPrefix;

    /// <summary>Inverse of <see cref="FileName(ReadOnlySpan{byte})"/> for plain names.</summary>
    public static bool TryDecodeFileName(string fileName, out byte[] key)
    {
        key = [];
        if (IsHashedName(fileName))
        {
            return false;
        }
        return TryDecode(fileName, out key, out _);
    }

    /// <summary>Lower-case hex BLAKE3 of the key bytes.</summary>
    public static string Hash(ReadOnlySpan<byte> key) => ContentHasher.Hash(key);

    /// <summary>Compact display form of a key for logs and errors.</summary>
    public static string Display(ReadOnlySpan<byte> key) => key.Length > 128 ? Encode(key[..128]) + "…" : Encode(key);

    private static string FileName(ReadOnlySpan<byte> key, string hash)
    {
        var enc = Encode(key);
        return enc.Length <= MaxPlainFileName ? enc : HashedPrefix + hash;
    }

    private const string HexUpper = "0123456789ABCDEF";

    private static bool IsHex(char c) => c is (>= '0' and <= '9') or (>= 'a' and <= 'f') or (>= 'A' and <= 'F');

    private static int HexVal(char c) => c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}
