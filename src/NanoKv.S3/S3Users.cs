using System.Security.Cryptography;

namespace NanoKv.S3;

/// <summary>The S3 credentials a listener accepts, parsed from "AK:SK[,AK2:SK2...]" (--s3-users / NANOKV_S3_USERS).</summary>
public sealed class S3Users
{
    private readonly Dictionary<string, string> _secrets;

    private S3Users(Dictionary<string, string> secrets) => _secrets = secrets;

    public int Count => _secrets.Count;
    public IEnumerable<string> AccessKeys => _secrets.Keys;

    public bool TryGetSecret(string accessKey, out string secret) => _secrets.TryGetValue(accessKey, out secret!);

    /// <summary>Parses the spec; throws FormatException naming the bad entry (secrets are never echoed).</summary>
    public static S3Users Parse(string spec)
    {
        var secrets = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var raw in spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var colon = raw.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || colon == raw.Length - 1)
            {
                throw new FormatException($"S3 user entry {secrets.Count + 1} is not ACCESS_KEY:SECRET_KEY");
            }
            var ak = raw[..colon];
            var sk = raw[(colon + 1)..];
            if (ak.Any(char.IsWhiteSpace) || ak.Contains('/', StringComparison.Ordinal))
            {
                throw new FormatException($"S3 access key '{ak}' may not contain whitespace or '/'");
            }
            if (!secrets.TryAdd(ak, sk))
            {
                throw new FormatException($"S3 access key '{ak}' is listed twice");
            }
        }
        if (secrets.Count == 0)
        {
            throw new FormatException("no S3 users given (expected ACCESS_KEY:SECRET_KEY[,...])");
        }
        return new S3Users(secrets);
    }

    /// <summary>A fresh random user in the AWS shape (20-char key id, 40-char secret), for `coord dev`.</summary>
    public static (string AccessKey, string SecretKey) Generate()
    {
        const string upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        const string secret = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        var ak = "NKV" + RandomNumberGenerator.GetString(upper, 17);
        var sk = RandomNumberGenerator.GetString(secret, 40);
        return (ak, sk);
    }

    public override string ToString() => $"{Count} S3 user(s): {string.Join(", ", _secrets.Keys)}";
}
