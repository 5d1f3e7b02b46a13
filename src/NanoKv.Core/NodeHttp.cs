using System.Net;

namespace NanoKv.Core;

/// <summary>The HttpClient nodes use to talk to each other: pooled connections, no automatic redirects.</summary>
public static class NodeHttp
{
    /// <summary>PEM file of a CA that node-to-node HTTPS should trust besides the system store.</summary>
    public const string CaEnvVar = "NANOKV_TLS_CA";

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
        };
        if (Environment.GetEnvironmentVariable(CaEnvVar) is { Length: > 0 } caFile)
        {
            // A private CA for node-to-node HTTPS (self-signed cluster certificates).
            var ca = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(caFile);
            handler.SslOptions.CertificateChainPolicy = new System.Security.Cryptography.X509Certificates.X509ChainPolicy
            {
                TrustMode = System.Security.Cryptography.X509Certificates.X509ChainTrustMode.CustomRootTrust,
                CustomTrustStore = { ca },
                RevocationMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck,
            };
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

    /// <summary>True for failures worth retrying: connection errors, timeouts, 5xx except 507, and 429.</summary>
    public static bool IsTransient(HttpStatusCode status) =>
        status == HttpStatusCode.TooManyRequests || ((int)status >= 500 && status != HttpStatusCode.InsufficientStorage && status != HttpStatusCode.NotImplemented);
}
