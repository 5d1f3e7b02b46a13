using System.Globalization;

namespace NanoKv.S3.SigV4;

/// <summary>
/// Client-side SigV4 header signing with the verifier's own canonicalisation (for the bench and raw-HTTP tests): signs
/// host, x-amz-date, x-amz-content-sha256 and any extra headers given. The signing key is derived once per day.
/// </summary>
public sealed class SigV4Signer(string accessKey, string secretKey, string region = "us-east-1", TimeProvider? clock = null)
{
    private readonly TimeProvider _clock = clock ?? TimeProvider.System;
    private readonly Lock _gate = new();
    private (string Date, byte[] Key) _key = ("", []);

    /// <summary>
    /// The headers to send: x-amz-date, x-amz-content-sha256 and Authorization. <paramref name="rawPathAndQuery"/> is the
    /// request target as it goes on the wire (path percent-encoded, query optional); <paramref name="host"/> is the Host header.
    /// </summary>
    public IReadOnlyList<KeyValuePair<string, string>> Sign(string method, string host, string rawPathAndQuery,
        string payloadHash = "UNSIGNED-PAYLOAD", IEnumerable<KeyValuePair<string, string>>? extraHeaders = null)
    {
        var now = _clock.GetUtcNow().UtcDateTime;
        var amzDate = now.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        var date = amzDate[..8];
        var headers = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["host"] = host,
            ["x-amz-content-sha256"] = payloadHash,
            ["x-amz-date"] = amzDate,
        };
        foreach (var (name, value) in extraHeaders ?? [])
        {
            headers[name.ToLowerInvariant()] = value.Trim();
        }
        var q = rawPathAndQuery.IndexOf('?', StringComparison.Ordinal);
        var (path, query) = q < 0 ? (rawPathAndQuery, "") : (rawPathAndQuery[..q], rawPathAndQuery[(q + 1)..]);
        var signedHeaders = headers.Keys.ToArray();
        var request = new SigV4Request(method, path, query, name => headers.GetValueOrDefault(name));
        var canonical = string.Join('\n', method, SigV4Verifier.CanonicalUriCandidates(path).First(),
            SigV4Verifier.CanonicalQuery(AwsUri.ParseQuery(query), excludeSignature: false),
            SigV4Verifier.CanonicalHeaders(request, signedHeaders), string.Join(';', signedHeaders), payloadHash);
        var scope = $"{date}/{region}/s3/aws4_request";
        var signature = SigV4Crypto.HmacHex(KeyFor(date), SigV4Verifier.StringToSign(amzDate, scope, canonical));
        return
        [
            new("x-amz-date", amzDate),
            new("x-amz-content-sha256", payloadHash),
            new("Authorization", $"{SigV4Crypto.Algorithm} Credential={accessKey}/{scope}, SignedHeaders={string.Join(';', signedHeaders)}, Signature={signature}"),
        ];
    }

    private byte[] KeyFor(string date)
    {
        lock (_gate)
        {
            if (_key.Date != date)
            {
                _key = (date, SigV4Crypto.SigningKey(secretKey, date, region, "s3"));
            }
            return _key.Key;
        }
    }
}
