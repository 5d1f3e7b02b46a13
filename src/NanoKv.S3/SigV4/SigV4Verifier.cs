using System.Globalization;
using System.Text;

namespace NanoKv.S3.SigV4;

/// <summary>Verifies AWS Signature V4 (Authorization header or presigned query) against <see cref="S3Users"/>.</summary>
public sealed class SigV4Verifier(S3Users users, TimeProvider? clock = null)
{
    /// <summary>AWS rejects requests whose x-amz-date is further than this from the server clock.</summary>
    public static readonly TimeSpan MaxSkew = TimeSpan.FromMinutes(15);

    /// <summary>Longest presigned validity AWS allows (7 days).</summary>
    public const int MaxPresignSeconds = 604800;

    private readonly TimeProvider _clock = clock ?? TimeProvider.System;

    /// <summary>True when the request carries any SigV4 material (header or presigned query).</summary>
    public static bool HasSignature(SigV4Request req, IReadOnlyList<KeyValuePair<string, string>> query) =>
        req.Header("Authorization") is not null || query.Any(p => p.Key == "X-Amz-Signature" || p.Key == "X-Amz-Credential");

    /// <summary>Verifies and returns the signer; throws <see cref="S3Exception"/> with the S3 error AWS would give.</summary>
    public SigV4Auth Verify(SigV4Request req)
    {
        var query = AwsUri.ParseQuery(req.RawQuery);
        var auth = req.Header("Authorization");
        if (auth is not null)
        {
            return VerifyHeader(req, query, auth);
        }
        if (query.Any(p => p.Key == "X-Amz-Algorithm" || p.Key == "X-Amz-Signature"))
        {
            return VerifyPresigned(req, query);
        }
        if (query.Any(p => p.Key is "AWSAccessKeyId" or "Signature"))
        {
            throw new S3Exception(S3ErrorCode.InvalidRequest, "Signature Version 2 is not supported; sign with AWS4-HMAC-SHA256.");
        }
        throw new S3Exception(S3ErrorCode.AccessDenied, "Anonymous access is not allowed; sign the request with AWS Signature Version 4.");
    }

    private SigV4Auth VerifyHeader(SigV4Request req, List<KeyValuePair<string, string>> query, string auth)
    {
        if (!auth.StartsWith(SigV4Crypto.Algorithm + " ", StringComparison.Ordinal))
        {
            if (auth.StartsWith("AWS ", StringComparison.Ordinal))
            {
                throw new S3Exception(S3ErrorCode.InvalidRequest, "Signature Version 2 is not supported; sign with AWS4-HMAC-SHA256.");
            }
            throw new S3Exception(S3ErrorCode.AuthorizationHeaderMalformed, "The authorization header must use AWS4-HMAC-SHA256.");
        }
        string? credential = null, signedHeaders = null, signature = null;
        foreach (var part in auth[SigV4Crypto.Algorithm.Length..].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new S3Exception(S3ErrorCode.AuthorizationHeaderMalformed, $"The authorization header is malformed near '{part}'.");
            }
            var (k, v) = (part[..eq].Trim(), part[(eq + 1)..].Trim());
            switch (k)
            {
                case "Credential": credential = v; break;
                case "SignedHeaders": signedHeaders = v; break;
                case "Signature": signature = v; break;
                default: break;
            }
        }
        if (credential is null || signedHeaders is null || signature is null)
        {
            throw new S3Exception(S3ErrorCode.AuthorizationHeaderMalformed, "The authorization header needs Credential, SignedHeaders and Signature.");
        }
        var amzDate = req.Header("x-amz-date") ?? FromHttpDate(req.Header("Date"))
            ?? throw new S3Exception(S3ErrorCode.AccessDenied, "AWS authentication requires a valid Date or x-amz-date header.");
        var when = ParseAmzDate(amzDate, S3ErrorCode.AccessDenied);
        var cred = ParseCredential(credential, amzDate, S3ErrorCode.AuthorizationHeaderMalformed);
        var now = _clock.GetUtcNow();
        if ((when - now).Duration() > MaxSkew)
        {
            throw new S3Exception(S3ErrorCode.RequestTimeTooSkewed, "The difference between the request time and the server's time is too large.")
            {
                Details = [new("RequestTime", amzDate), new("ServerTime", now.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture)), new("MaxAllowedSkewMilliseconds", "900000")],
            };
        }
        var contentSha = req.Header("x-amz-content-sha256")
            ?? throw new S3Exception(S3ErrorCode.InvalidRequest, "Missing required header for this request: x-amz-content-sha256");
        var (mode, shaHex) = ParsePayload(contentSha);
        var secret = Secret(cred.AccessKey);
        var headers = SignedHeaderList(signedHeaders, S3ErrorCode.AuthorizationHeaderMalformed);
        var key = SigV4Crypto.SigningKey(secret, cred.Date, cred.Region, cred.Service);
        var expected = Check(req, query, headers, contentSha, amzDate, cred.Scope, key, signature, excludeSignatureParam: false);
        return new SigV4Auth(cred.AccessKey, amzDate, cred.Scope, key, expected, mode, shaHex, Presigned: false);
    }

    private SigV4Auth VerifyPresigned(SigV4Request req, List<KeyValuePair<string, string>> query)
    {
        string Param(string name) => query.FirstOrDefault(p => p.Key == name).Value
            ?? throw new S3Exception(S3ErrorCode.AuthorizationQueryParametersError, $"Query-string authentication requires the {name} parameter.");
        if (Param("X-Amz-Algorithm") != SigV4Crypto.Algorithm)
        {
            throw new S3Exception(S3ErrorCode.AuthorizationQueryParametersError, "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\".");
        }
        var amzDate = Param("X-Amz-Date");
        var when = ParseAmzDate(amzDate, S3ErrorCode.AuthorizationQueryParametersError);
        var cred = ParseCredential(Param("X-Amz-Credential"), amzDate, S3ErrorCode.AuthorizationQueryParametersError);
        if (!int.TryParse(Param("X-Amz-Expires"), NumberStyles.None, CultureInfo.InvariantCulture, out var expires) || expires > MaxPresignSeconds)
        {
            throw new S3Exception(S3ErrorCode.AuthorizationQueryParametersError, $"X-Amz-Expires must be a number of seconds between 0 and {MaxPresignSeconds}.");
        }
        var now = _clock.GetUtcNow();
        if (when - now > MaxSkew)
        {
            throw new S3Exception(S3ErrorCode.AccessDenied, "Request is not valid yet.");
        }
        if (now > when.AddSeconds(expires))
        {
            throw new S3Exception(S3ErrorCode.AccessDenied, "Request has expired.")
            {
                Details = [new("X-Amz-Expires", expires.ToString(CultureInfo.InvariantCulture)), new("Expires", when.AddSeconds(expires).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture))],
            };
        }
        var secret = Secret(cred.AccessKey);
        var headers = SignedHeaderList(Param("X-Amz-SignedHeaders"), S3ErrorCode.AuthorizationQueryParametersError);
        var contentSha = query.FirstOrDefault(p => p.Key == "X-Amz-Content-Sha256").Value ?? "UNSIGNED-PAYLOAD";
        var (mode, shaHex) = ParsePayload(contentSha);
        var key = SigV4Crypto.SigningKey(secret, cred.Date, cred.Region, cred.Service);
        var expected = Check(req, query, headers, contentSha, amzDate, cred.Scope, key, Param("X-Amz-Signature"), excludeSignatureParam: true);
        return new SigV4Auth(cred.AccessKey, amzDate, cred.Scope, key, expected, mode, shaHex, Presigned: true);
    }

    private string Secret(string accessKey) => users.TryGetSecret(accessKey, out var secret)
        ? secret
        : throw new S3Exception(S3ErrorCode.InvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records.")
        {
            Details = [new("AWSAccessKeyId", accessKey)],
        };

    /// <summary>Computes the expected signature over each plausible canonical URI and compares; returns the matching signature.</summary>
    private static string Check(SigV4Request req, List<KeyValuePair<string, string>> query, string[] signedHeaders, string payloadHash,
        string amzDate, string scope, byte[] key, string signature, bool excludeSignatureParam)
    {
        if (!signedHeaders.Contains("host"))
        {
            throw new S3Exception(S3ErrorCode.AccessDenied, "The host header must be signed.");
        }
        var canonicalQuery = CanonicalQuery(query, excludeSignatureParam);
        var canonicalHeaders = CanonicalHeaders(req, signedHeaders);
        string? firstCanonical = null, firstStringToSign = null;
        foreach (var uri in CanonicalUriCandidates(req.RawPath))
        {
            var canonical = string.Join('\n', req.Method, uri, canonicalQuery, canonicalHeaders, string.Join(';', signedHeaders), payloadHash);
            var stringToSign = StringToSign(amzDate, scope, canonical);
            var expected = SigV4Crypto.HmacHex(key, stringToSign);
            if (SigV4Crypto.SignatureEquals(expected, signature))
            {
                return expected;
            }
            firstCanonical ??= canonical;
            firstStringToSign ??= stringToSign;
        }
        throw new S3Exception(S3ErrorCode.SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
        {
            Details = [new("SignatureProvided", signature), new("StringToSign", firstStringToSign!), new("CanonicalRequest", firstCanonical!)],
        };
    }

    public static string StringToSign(string amzDate, string scope, string canonicalRequest) =>
        $"{SigV4Crypto.Algorithm}\n{amzDate}\n{scope}\n{SigV4Crypto.Sha256Hex(canonicalRequest)}";

    /// <summary>S3 canonical URI: the path decoded once and re-encoded per AWS (no normalisation); the path as sent is the fallback
    /// for clients that encoded differently (e.g. '%2F' inside a key).</summary>
    public static IEnumerable<string> CanonicalUriCandidates(string rawPath)
    {
        var path = string.IsNullOrEmpty(rawPath) ? "/" : rawPath;
        var reencoded = AwsUri.Encode(AwsUri.Decode(path, plusIsSpace: false), keepSlash: true);
        yield return reencoded;
        if (!string.Equals(reencoded, path, StringComparison.Ordinal))
        {
            yield return path;
        }
    }

    /// <summary>Names and values AWS-encoded, sorted by name then value (ordinal), joined "a=b&amp;c=".</summary>
    public static string CanonicalQuery(IEnumerable<KeyValuePair<string, string>> query, bool excludeSignature) =>
        string.Join('&', query
            .Where(p => !(excludeSignature && p.Key == "X-Amz-Signature"))
            .Select(p => (Name: AwsUri.Encode(p.Key, false), Value: AwsUri.Encode(p.Value, false)))
            .OrderBy(p => p.Name, StringComparer.Ordinal).ThenBy(p => p.Value, StringComparer.Ordinal)
            .Select(p => p.Name + "=" + p.Value));

    /// <summary>"name:value\n" per signed header; values trimmed with inner runs of spaces collapsed.</summary>
    public static string CanonicalHeaders(SigV4Request req, string[] signedHeaders)
    {
        var sb = new StringBuilder();
        foreach (var h in signedHeaders)
        {
            sb.Append(h).Append(':').Append(CollapseSpaces(req.Header(h) ?? "")).Append('\n');
        }
        return sb.ToString();
    }

    private static string CollapseSpaces(string v)
    {
        v = v.Trim();
        if (!v.Contains("  ", StringComparison.Ordinal))
        {
            return v;
        }
        var sb = new StringBuilder(v.Length);
        foreach (var c in v)
        {
            if (c != ' ' || sb.Length == 0 || sb[^1] != ' ')
            {
                sb.Append(c);
            }
        }
        return sb.ToString();
    }

    private static string[] SignedHeaderList(string signedHeaders, S3ErrorCode error)
    {
        var list = signedHeaders.Split(';');
        if (list.Any(string.IsNullOrEmpty) || list.Any(h => h != h.ToLowerInvariant()))
        {
            throw new S3Exception(error, "SignedHeaders must be lower-case header names separated by ';'.");
        }
        return list;
    }

    private static (PayloadMode, string?) ParsePayload(string contentSha) => contentSha switch
    {
        "UNSIGNED-PAYLOAD" => (PayloadMode.Unsigned, null),
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => (PayloadMode.StreamingSigned, null),
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => (PayloadMode.StreamingSignedTrailer, null),
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => (PayloadMode.StreamingUnsignedTrailer, null),
        _ when contentSha.Length == 64 && contentSha.All(char.IsAsciiHexDigit) => (PayloadMode.SignedSha256, contentSha.ToLowerInvariant()),
        _ when contentSha.StartsWith("STREAMING-", StringComparison.Ordinal) =>
            throw new S3Exception(S3ErrorCode.NotImplemented, $"x-amz-content-sha256 '{contentSha}' is not supported (SigV4a is not)."),
        _ => throw new S3Exception(S3ErrorCode.InvalidArgument, "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-* or a hex SHA-256."),
    };

    private sealed record Credential(string AccessKey, string Date, string Region, string Service)
    {
        public string Scope => $"{Date}/{Region}/{Service}/aws4_request";
    }

    private static Credential ParseCredential(string credential, string amzDate, S3ErrorCode error)
    {
        // AK/yyyyMMdd/region/s3/aws4_request; the key id itself has no '/'.
        var parts = credential.Split('/');
        if (parts.Length != 5 || parts[0].Length == 0 || parts[4] != "aws4_request")
        {
            throw new S3Exception(error, $"The credential '{credential}' is malformed; expected \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".");
        }
        if (parts[3] != "s3")
        {
            throw new S3Exception(error, $"The credential is for service '{parts[3]}'; expected 's3'.");
        }
        if (parts[1] != amzDate[..8])
        {
            throw new S3Exception(error, $"The credential date '{parts[1]}' does not match the request date '{amzDate[..8]}'.");
        }
        return new Credential(parts[0], parts[1], parts[2], parts[3]);
    }

    private static DateTimeOffset ParseAmzDate(string amzDate, S3ErrorCode error) =>
        DateTimeOffset.TryParseExact(amzDate, "yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture,
            DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var t)
            ? t
            : throw new S3Exception(error, $"The date '{amzDate}' is not in ISO 8601 basic format (yyyyMMddTHHmmssZ).");

    /// <summary>Clients signing with only a Date header: RFC 1123 date turned into the amz form.</summary>
    private static string? FromHttpDate(string? date) =>
        date is not null && DateTimeOffset.TryParse(date, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t)
            ? t.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture)
            : null;
}
