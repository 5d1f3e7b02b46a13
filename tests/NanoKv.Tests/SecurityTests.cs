using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.Extensions.Logging;
using NanoKv.Coordinator;
using NanoKv.Coordinator.Core;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;
using NanoKv.Volume;

namespace NanoKv.Tests;

/// <summary>Safe by default: loopback binds, the cluster secret, presigned reads, the pull allowlist, access keys, TLS, bad input.</summary>
public class SecurityTests
{
    private const string Secret = "cluster-secret-for-tests";

    [Fact]
    public async Task ServersBindToLoopbackUnlessToldOtherwise()
    {
        Assert.Equal("127.0.0.1", new CoordinatorOptions { DbDir = "x" }.Host);
        Assert.Equal("127.0.0.1", new VolumeOptions { DataDir = "x" }.Host);
        await using var c = await TestCluster.StartAsync(volumes: 1, replicas: 1);
        Assert.StartsWith("http://127.0.0.1:", c.Url, StringComparison.Ordinal);
        Assert.StartsWith("http://127.0.0.1:", c.Volume(0).Url, StringComparison.Ordinal);
    }

    [Fact]
    public async Task VolumeReadsNeedTheSecretOrAValidPresignedRedirect()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3, secret: Secret);
        var data = RandomNumberGenerator.GetBytes(10_000);
        (await c.Client.PutAsync($"{c.Url}/doc", new ByteArrayContent(data))).EnsureSuccessStatusCode();

        // The coordinator's redirect carries exp/sig, so a plain client (curl -L) can follow it.
        using var redirect = await c.NoRedirect.GetAsync($"{c.Url}/doc");
        Assert.Equal(HttpStatusCode.Found, redirect.StatusCode);
        var location = redirect.Headers.Location!.ToString();
        Assert.Contains("sig=", location, StringComparison.Ordinal);
        Assert.Equal(data, await c.Client.GetByteArrayAsync(location));

        var exp = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds();
        var past = DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeSeconds();
        // The read port takes the same signatures (what redirects point at), and sends a bad one to the main port.
        foreach (var readPort in new[] { $"{c.Volume(0).ReadUrl}/doc", $"{c.Volume(0).ReadUrl}/doc?exp={exp}&sig={new string('0', 64)}" })
        {
            using var resp = await c.Client.GetAsync(readPort);
            Assert.True(resp.StatusCode == HttpStatusCode.Unauthorized, $"{readPort}: {resp.StatusCode}");
        }
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Volume(0).ReadUrl}/doc?exp={exp}&sig={ClusterAuth.Sign(Secret, "doc", exp)}"));
        var direct = $"{c.Volume(0).Url}/doc";
        foreach (var url in new[]
        {
            direct,                                                                          // unsigned
            $"{direct}?exp={exp}&sig={new string('0', 64)}",                                 // forged
            $"{direct}?exp={past}&sig={ClusterAuth.Sign(Secret, "doc", past)}",              // expired
            $"{direct}?exp={exp}&sig={ClusterAuth.Sign(Secret, "other", exp)}",              // another key's
            $"{direct}?exp={exp + 60}&sig={ClusterAuth.Sign(Secret, "doc", exp)}",           // stretched expiry
        })
        {
            using var resp = await c.NoRedirect.GetAsync(url);
            Assert.True(resp.StatusCode == HttpStatusCode.Unauthorized, $"{url}: {resp.StatusCode}");
            await DataPathTests.AssertJsonError(resp, ApiError.Codes.Unauthorized);
        }
        using var withSecret = new HttpRequestMessage(HttpMethod.Get, direct);
        withSecret.Headers.Add(ClusterAuth.Header, Secret);
        using var ok = await c.NoRedirect.SendAsync(withSecret);
        Assert.Equal(data, await ok.Content.ReadAsByteArrayAsync());
    }

    [Fact]
    public async Task PullOnlyFetchesFromClusterNodes()
    {
        // Volumes that joined the coordinator learn the node list from its heartbeat answers.
        await using var c = await TestCluster.StartAsync(volumes: 0, replicas: 2, secret: Secret);
        await c.AddVolumeAsync();
        await c.AddVolumeAsync();
        using var admin = NodeHttp.Create(Secret);
        var vc = new VolumeClient(admin, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2));
        Assert.True((await vc.PrepareAsync(c.Volume(0).Url, "stolen"u8.ToArray(), "up1", null, default)).Ok);

        using var outsider = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        outsider.Start();
        var outsiderUrl = $"http://127.0.0.1:{((IPEndPoint)outsider.LocalEndpoint).Port}";
        using var pull = await admin.PostAsync($"{c.Volume(0).Url}/internal/pull?upload_id=up1&from={Uri.EscapeDataString(outsiderUrl)}", null);
        Assert.Equal(HttpStatusCode.Forbidden, pull.StatusCode);
        await DataPathTests.AssertJsonError(pull, ApiError.Codes.UnknownSource);
        Assert.False(outsider.Pending(), "the volume connected to a URL outside the cluster");

        // A real node is an accepted source.
        var data = RandomNumberGenerator.GetBytes(5000);
        (await c.Client.PutAsync($"{c.Url}/src", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        var meta = c.Coordinator.Store.Get("src"u8)!;
        var target = c.Volumes.First(v => v!.NodeId != meta.Replicas[0])!;
        var source = c.VolumeById(meta.Replicas[0]);
        Assert.True((await vc.PrepareAsync(target.Url, "src"u8.ToArray(), "up2", null, default)).Ok);
        Assert.True((await vc.PullAsync(target.Url, "up2", source.Url, meta.Etag, default)).Ok);
    }

    [Fact]
    public async Task AccessKeysSeparateReadersFromWriters()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 2, configure: o => o with { ReadWriteKeys = ["rw-key"], ReadOnlyKeys = ["ro-key"] });
        HttpRequestMessage Req(HttpMethod m, string key, string? token, bool bearer = true, byte[]? body = null)
        {
            var req = new HttpRequestMessage(m, $"{c.Url}/{key}") { Content = body is null ? null : new ByteArrayContent(body) };
            if (token is not null)
            {
                if (bearer)
                {
                    req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
                }
                else
                {
                    req.Headers.Add("X-NanoKv-Key", token);
                }
            }
            return req;
        }
        async Task Expect(HttpRequestMessage req, HttpStatusCode status, string? error = null)
        {
            using (req)
            using (var resp = await c.NoRedirect.SendAsync(req))
            {
                Assert.True(resp.StatusCode == status, $"{req.Method} {req.RequestUri}: {resp.StatusCode}");
                if (error is not null)
                {
                    await DataPathTests.AssertJsonError(resp, error);
                }
            }
        }

        var data = RandomNumberGenerator.GetBytes(3000);
        await Expect(Req(HttpMethod.Put, "k", null, body: data), HttpStatusCode.Unauthorized, ApiError.Codes.Unauthorized);
        await Expect(Req(HttpMethod.Put, "k", "wrong", body: data), HttpStatusCode.Unauthorized, ApiError.Codes.Unauthorized);
        await Expect(Req(HttpMethod.Put, "k", "ro-key", body: data), HttpStatusCode.Forbidden, ApiError.Codes.Forbidden);
        Assert.Null(c.Coordinator.Store.Get("k"u8));
        await Expect(Req(HttpMethod.Put, "k", "rw-key", body: data), HttpStatusCode.Created);
        await Expect(Req(HttpMethod.Get, "k", null), HttpStatusCode.Unauthorized, ApiError.Codes.Unauthorized);
        await Expect(Req(HttpMethod.Get, "k", "ro-key", bearer: false), HttpStatusCode.Found);
        await Expect(Req(HttpMethod.Head, "k", "ro-key"), HttpStatusCode.OK);
        await Expect(Req(HttpMethod.Delete, "k", "ro-key"), HttpStatusCode.Forbidden, ApiError.Codes.Forbidden);
        await Expect(Req(HttpMethod.Delete, "k", "rw-key", bearer: false), HttpStatusCode.NoContent);
        // Health stays open for load balancers and probes, but a key that merely normalises to /healthz
        // ("x/../healthz", written by hand since HttpClient would fold it) is an object like any other.
        await Expect(new HttpRequestMessage(HttpMethod.Get, $"{c.Url}/healthz"), HttpStatusCode.OK);
        var (status, body) = await DataPathTests.RawExchangeAsync(c.Url, "GET /x/../healthz HTTP/1.1", "");
        Assert.True(status.Contains(" 401 ", StringComparison.Ordinal), $"{status} {body}");
    }

    [Fact]
    public async Task TlsEndToEndWithAPrivateCa()
    {
        var dir = TempDir.Create("tls");
        var (certFile, keyFile, cert) = WriteSelfSignedPem(dir);
        VolumeServer? volume = null;
        CoordinatorServer? coord = null;
        // The coordinator trusts the cluster's own CA for its calls to volumes (read when its client is built).
        Environment.SetEnvironmentVariable(NodeHttp.CaEnvVar, certFile);
        try
        {
            volume = VolumeServer.Create(new VolumeOptions { DataDir = Path.Combine(dir, "vol"), Port = 0, TlsCert = certFile, TlsKey = keyFile, LogLevel = LogLevel.Warning });
            await volume.StartAsync();
            coord = CoordinatorServer.Create(new CoordinatorOptions
            {
                DbDir = Path.Combine(dir, "index"),
                Port = 0,
                Volumes = [volume.Url],
                TlsCert = certFile,
                TlsKey = keyFile,
                DataPath = new DataPathSettings { Replicas = 1 },
                Health = TestCluster.FastHealth,
                LogLevel = LogLevel.Warning,
            });
            await coord.StartAsync();
            Environment.SetEnvironmentVariable(NodeHttp.CaEnvVar, null);
            Assert.StartsWith("https://", volume.Url, StringComparison.Ordinal);
            Assert.Null(volume.ReadUrl); // sendfile cannot encrypt: no plain-HTTP read port beside a TLS volume
            Assert.StartsWith("https://", coord.Url, StringComparison.Ordinal);

            using var handler = new HttpClientHandler();
            handler.ServerCertificateCustomValidationCallback = (_, presented, _, _) => presented is not null && presented.Thumbprint == cert.Thumbprint;
            using var client = new HttpClient(handler);
            await TestCluster.WaitUntilAsync(() => coord.Nodes.StatusOf(volume.NodeId) == NodeStatus.Alive, TimeSpan.FromSeconds(10), "volume alive over https");
            var data = RandomNumberGenerator.GetBytes(200_000);
            using var put = await client.PutAsync($"{coord.Url}/secure", new ByteArrayContent(data));
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
            Assert.Equal(data, await client.GetByteArrayAsync($"{coord.Url}/secure"));
            Assert.Equal(data, await client.GetByteArrayAsync($"{coord.Url}/secure?proxy=1"));

            // Plain HTTP to a TLS port gets nowhere.
            using var plain = new HttpClient();
            await Assert.ThrowsAnyAsync<HttpRequestException>(() => plain.GetAsync(coord.Url.Replace("https://", "http://", StringComparison.Ordinal) + "/secure"));
        }
        finally
        {
            Environment.SetEnvironmentVariable(NodeHttp.CaEnvVar, null);
            if (coord is not null)
            {
                await coord.DisposeAsync();
            }
            if (volume is not null)
            {
                await volume.DisposeAsync();
            }
            cert.Dispose();
            TempDir.Delete(dir);
        }
    }

    [Fact]
    public void HalfATlsConfigurationIsRefusedRatherThanServedAsPlainHttp()
    {
        var dir = TempDir.Create("tls-half");
        try
        {
            Assert.Throws<ArgumentException>(() => VolumeServer.Create(new VolumeOptions { DataDir = dir, Port = 0, TlsCert = Path.Combine(dir, "cert.pem") }));
        }
        finally
        {
            TempDir.Delete(dir);
        }
    }

    /// <summary>A self-signed certificate for 127.0.0.1 (its own CA), written as PEM cert and key files.</summary>
    internal static (string Cert, string Key, X509Certificate2 X509) WriteSelfSignedPem(string dir)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=nanokv-test", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyCertSign, true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        var cert = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        var certFile = Path.Combine(dir, "cert.pem");
        var keyFile = Path.Combine(dir, "key.pem");
        File.WriteAllText(certFile, cert.ExportCertificatePem());
        File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
        return (certFile, keyFile, X509CertificateLoader.LoadCertificate(cert.RawData));
    }

    [Theory]
    [InlineData("%02%01%1F%7F")]
    [InlineData("..")]
    [InlineData("..%2F..%2Fetc%2Fpasswd")]
    [InlineData("%5C..%5C..%5Cwin")]
    [InlineData("%2F")]
    [InlineData("%FF%FE")]
    public async Task NastyKeysStayInsideTheDataFolder(string encoded)
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3);
        Assert.True(KeyCodec.TryDecode(encoded, out var key, out _));
        // Written by hand (HttpClient would normalise the path); ASCII body because the helper sends text.
        var text = RandomNumberGenerator.GetString("abcdefghijklmnopqrstuvwxyz0123456789", 1000);
        var data = Encoding.ASCII.GetBytes(text);
        var (status, body) = await DataPathTests.RawExchangeAsync(c.Url, $"PUT /{encoded} HTTP/1.1", text);
        Assert.True(status.Contains(" 201 ", StringComparison.Ordinal), $"{encoded}: {status} {body}");
        foreach (var mode in new[] { "", "?proxy=1" })
        {
            var (getStatus, got) = await DataPathTests.RawExchangeAsync(c.Url, $"GET /{encoded}{mode} HTTP/1.1", "");
            Assert.True(getStatus.Contains(" 200 ", StringComparison.Ordinal) || getStatus.Contains(" 302 ", StringComparison.Ordinal), $"{encoded}{mode}: {getStatus} {got}");
        }
        using (var viaClient = await c.Client.GetAsync(new Uri($"{c.Url}/{encoded}", new UriCreationOptions { DangerousDisablePathAndQueryCanonicalization = true })))
        {
            // HttpClient follows the redirect (or is proxied for "." and "..") to the same bytes.
            Assert.Equal(data, await viaClient.Content.ReadAsByteArrayAsync());
        }
        foreach (var v in c.Volumes)
        {
            var path = Path.GetFullPath(v!.Store.BlobPath(key));
            Assert.StartsWith(v.Store.BlobsDir + Path.DirectorySeparatorChar, path, StringComparison.Ordinal);
            Assert.Equal(data, await File.ReadAllBytesAsync(path));
            // Nothing else appeared anywhere in the volume folder but blobs/ and the bookkeeping folders.
            Assert.All(Directory.GetFileSystemEntries(v.Store.Root), e => Assert.Contains(Path.GetFileName(e), new[] { "blobs", "tmp", "tombs", "node_id", "quarantine", HandoffServer.FileName }));
        }
        var (delStatus, _) = await DataPathTests.RawExchangeAsync(c.Url, $"DELETE /{encoded} HTTP/1.1", "");
        Assert.Contains(" 204 ", delStatus, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("%00")]
    [InlineData("a%00b")]
    public async Task KeysWithNulAreRefusedByTheHttpLayer(string encoded)
    {
        // Kestrel refuses a decoded NUL in the request path before any handler runs (400, empty body).
        await using var c = await TestCluster.StartAsync(volumes: 1, replicas: 1);
        var (status, _) = await DataPathTests.RawExchangeAsync(c.Url, $"PUT /{encoded} HTTP/1.1", "abc");
        Assert.Contains(" 400 ", status, StringComparison.Ordinal);
        Assert.Empty(c.Coordinator.Store.Scan());
        Assert.Empty(Directory.GetFiles(c.Volume(0).Store.BlobsDir, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task OversizedHeadersAre431OnBothServers()
    {
        await using var c = await TestCluster.StartAsync(volumes: 1, replicas: 1);
        foreach (var url in new[] { $"{c.Url}/k", $"{c.Volume(0).Url}/healthz" })
        {
            using var req = new HttpRequestMessage(HttpMethod.Get, url);
            req.Headers.Add("X-Padding", new string('a', 40 * 1024));
            using var resp = await c.NoRedirect.SendAsync(req);
            Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, resp.StatusCode);
        }
        // Still serving afterwards.
        using var health = await c.NoRedirect.GetAsync($"{c.Url}/healthz");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Theory]
    [InlineData("/internal/prepare?key=k&upload_id=u1&bogus=1")]
    [InlineData("/internal/commit?upload_id=u1&key=k&version=1&force=true")]
    [InlineData("/internal/abort?upload_id=u1&all=1")]
    [InlineData("/internal/delete?key=k&recursive=1")]
    [InlineData("/admin/sweep_tmp?safe_age_secs=0&everything=1")]
    public async Task UnknownQueryParametersOnInternalEndpointsAre400(string pathAndQuery)
    {
        await using var c = await TestCluster.StartAsync(volumes: 1, replicas: 1);
        using var resp = await c.NoRedirect.PostAsync(c.Volume(0).Url + pathAndQuery, null);
        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        await DataPathTests.AssertJsonError(resp, ApiError.Codes.InvalidArgument);
        Assert.Empty(Directory.GetFiles(c.Volume(0).Store.TmpDir));
    }
}
