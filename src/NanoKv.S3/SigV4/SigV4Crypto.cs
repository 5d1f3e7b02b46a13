using System.Security.Cryptography;
using System.Text;

namespace NanoKv.S3.SigV4;

/// <summary>The SigV4 primitives: key derivation, HMAC, hex SHA-256.</summary>
public static class SigV4Crypto
{
    public const string Algorithm = "AWS4-HMAC-SHA256";
    public const string EmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// <summary>kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request").</summary>
    public static byte[] SigningKey(string secret, string date, string region, string service)
    {
        var k = HMACSHA256.HashData(Encoding.UTF8.GetBytes("AWS4" + secret), Encoding.UTF8.GetBytes(date));
        k = HMACSHA256.HashData(k, Encoding.UTF8.GetBytes(region));
        k = HMACSHA256.HashData(k, Encoding.UTF8.GetBytes(service));
        return HMACSHA256.HashData(k, "aws4_request"u8);
    }

    public static string HmacHex(byte[] key, string data) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(data)));

    public static string Sha256Hex(string data) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(data)));

    /// <summary>Constant-time comparison of two lowercase hex signatures.</summary>
    public static bool SignatureEquals(string expected, string given) =>
        CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(expected), Encoding.ASCII.GetBytes(given.ToLowerInvariant()));
}
