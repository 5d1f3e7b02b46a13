using System.Net;
using System.Security.Cryptography.X509Certificates;

namespace NanoKv.Core;

/// <summary>The HttpClient nodes use to talk to each other: pooled connections, no automatic redirects.</summary>
public static class NodeHttp
{
    /// <summary>PEM file of a CA that node-to-node HTTPS should trust besides the system store.</summary>
    public const string CaEnvVar = "NANOKV_TLS_CA";

    /// <summary>Set by a volume on a full read it checks against the ETag it sends before the body's last chunk leaves.</summary>
    public const string VerifiedHeader = "X-NanoKv-Verified";

    /// <summary>On an upload, "0": write it around the page cache (a replica that GETs do not go to first).</summary>
    public const string CacheHeader = "X-NanoKv-Cache";

    /// <summary>
    /// Query parameter of a redirect to a volume: the committed version the coordinator looked up. The volume
    /// answers 404 when its blob has another version (the key was deleted and written again since the lookup,
    /// possibly not committed yet), so a redirected read never returns a write the metadata does not hold.
    /// </summary>
    public const string VersionParam = "v";

    /// <summary>"v=VERSION", the query parameter naming a committed version.</summary>
    public static string VersionQuery(long version) => $"{VersionParam}={version.ToString(System.Globalization.CultureInfo.InvariantCulture)}";

    /// <summary>The version a request asks for (the value of <see cref="VersionParam"/>), or null when absent or malformed.</summary>
    public static long? ParseVersion(string? value) =>
        long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : null;

    public static HttpClient Create(string? secret, TimeSpan? timeout = null)
    {
        var handler = new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
            MaxConnectionsPerServer = 256,
            ConnectTimeout = TimeSpan.FromSeconds(3),
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseProxy = false,
            // An upload waits for the volume's 100-continue under its caller's own deadline; HttpClient's 1 s
            // default would send the body to a hung volume and make it impossible to place it elsewhere.
            Expect100ContinueTimeout = TimeSpan.FromMinutes(1),
        };
        if (Environment.GetEnvironmentVariable(CaEnvVar) is { Length: > 0 } caFile)
        {
            // A private CA for node-to-node HTTPS (self-signed cluster certificates).
            // (certificates only: CreateFromPemFile would look for a private key in the same file)
            var cas = new X509Certificate2Collection();
            cas.ImportFromPemFile(caFile);
            var policy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                RevocationMode = X509RevocationMode.NoCheck,
            };
            policy.CustomTrustStore.AddRange(cas);
            handler.SslOptions.CertificateChainPolicy = policy;
        }
        // Per-call deadlines come from CancellationTokens; the client-wide timeout is only a backstop
        // because a 1 GB body can legitimately take minutes.
        var client = new HttpClient(handler) { Timeout = timeout ?? Timeout.InfiniteTimeSpan };
        if (!string.IsNullOrEmpty(secret))
        {
            client.DefaultRequestHeaders.Add(ClusterAuth.Header, secret);
        }
        return client;
    }

    /// <summary>
    /// The URL of a key on a node, exactly as encoded. System.Uri would otherwise unescape "%2E" and drop dot
    /// segments, turning the keys "." and ".." into "/".
    /// </summary>
    public static Uri ObjectUri(string baseUrl, ReadOnlySpan<byte> key, long? version = null) =>
        new(baseUrl.TrimEnd('/') + "/" + KeyCodec.UrlPath(key) + (version is long v ? "?" + VersionQuery(v) : ""),
            new UriCreationOptions { DangerousDisablePathAndQueryCanonicalization = true });

    /// <summary>True for failures worth retrying: connection errors, timeouts, 5xx except 507, and 429.</summary>
    public static bool IsTransient(HttpStatusCode status) =>
        status == HttpStatusCode.TooManyRequests || ((int)status >= 500 && status != HttpStatusCode.InsufficientStorage && status != HttpStatusCode.NotImplemented);
}
