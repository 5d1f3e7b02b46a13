using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using NanoKv.Core;
using NanoKv.Core.Hashing;
using NanoKv.Tests.Infrastructure;
using NanoKv.Volume;

namespace NanoKv.Tests.Perf;

/// <summary>
/// Full proxied reads (S3 GET, ?proxy=1) of blobs from SpliceRelay.MinBytes (8 MiB) are spliced from the volume's read port to the
/// client's socket: the client gets the same head the ordinary relay sends (plus Connection: close) and the
/// exact bytes; a copy that fails its hash after the head went out is cut, never ended normally.
/// </summary>
public class SpliceRelayTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>Volumes on the coordinator's host take full reads by handoff (ReadHandoffTests); these test the relay.</summary>
    internal static VolumeOptions NoHandoff(VolumeOptions o) => o with { Handoff = false };

    [Fact]
    public async Task AFullProxyReadIsSplicedOthersTakeTheOrdinaryRelay()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3, configureVolume: NoHandoff);
        var data = RandomNumberGenerator.GetBytes((int)SpliceRelay.MinBytes + 11);
        (await c.Client.PutAsync($"{c.Url}/big", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        (await c.Client.PutAsync($"{c.Url}/small", new ByteArrayContent(new byte[1000]))).EnsureSuccessStatusCode();
        await ReadPortTests.FirstChoiceAsync(c, "big"); // the coordinator knows every read port
        var sent = c.Coordinator.Objects.Metrics.SpliceRelays.WithLabels("sent");

        using (var resp = await c.Client.GetAsync($"{c.Url}/big?proxy=1").WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            Assert.Equal(data, await resp.Content.ReadAsByteArrayAsync().WaitAsync(Timeout));
            Assert.Equal($"\"{ContentHasher.Hash(data)}\"", resp.Headers.ETag?.Tag);
            Assert.Equal(data.Length, resp.Content.Headers.ContentLength);
            Assert.Equal("application/octet-stream", resp.Content.Headers.ContentType?.MediaType);
            Assert.Contains("bytes", resp.Headers.AcceptRanges);
            Assert.True(resp.Headers.Date is not null, "no Date header");
            Assert.NotEqual(true, resp.Headers.ConnectionClose); // the connection carries on (ResponseGate)
        }
        await TestCluster.WaitUntilAsync(() => sent.Value == 1, Timeout, "the read was counted as spliced");

        // A range and a small blob keep the ordinary relay (and the connection).
        using (var req = new HttpRequestMessage(HttpMethod.Get, $"{c.Url}/big?proxy=1") { Headers = { Range = new(5, 14) } })
        using (var resp = await c.Client.SendAsync(req).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.PartialContent, resp.StatusCode);
            Assert.Equal(data[5..15], await resp.Content.ReadAsByteArrayAsync().WaitAsync(Timeout));
            Assert.NotEqual(true, resp.Headers.ConnectionClose);
        }
        using (var resp = await c.Client.GetAsync($"{c.Url}/small?proxy=1").WaitAsync(Timeout))
        {
            Assert.Equal(new byte[1000], await resp.Content.ReadAsByteArrayAsync().WaitAsync(Timeout));
            Assert.NotEqual(true, resp.Headers.ConnectionClose);
        }
        Assert.Equal(1, sent.Value);
        Assert.Equal(0, c.Coordinator.Objects.Metrics.SpliceRelays.WithLabels("declined").Value);
    }

    [Fact]
    public async Task ACopyFailingItsHashAfterTheHeadIsCutNotEndedNormally()
    {
        await using var c = await TestCluster.StartAsync(volumes: 0, replicas: 3, configureVolume: NoHandoff);
        for (var i = 0; i < 3; i++)
        {
            await c.AddVolumeAsync(); // joined volumes report a corrupt copy to the coordinator
        }
        await TestCluster.WaitUntilAsync(() => c.Coordinator.Nodes.AliveIds().Count == 3, Timeout, "three volumes alive"); // else the PUT is a 503
        var data = RandomNumberGenerator.GetBytes((int)SpliceRelay.MinBytes + 5);
        (await c.Client.PutAsync($"{c.Url}/bad", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        var first = await ReadPortTests.FirstChoiceAsync(c, "bad");
        var path = first.Store.BlobPath(Encoding.UTF8.GetBytes("bad"));
        Ops.OpsTests.FlipByte(path);

        using (var resp = await c.Client.GetAsync($"{c.Url}/bad?proxy=1", HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode); // the head went out before the volume's hash was known
            var err = await Record.ExceptionAsync(() => resp.Content.ReadAsByteArrayAsync().WaitAsync(Timeout));
            Assert.True(err is HttpRequestException or IOException, $"expected a cut transfer, got {err?.ToString() ?? "the whole body"}");
        }
        await TestCluster.WaitUntilAsync(
            () => c.Coordinator.Objects.Metrics.SpliceRelays.WithLabels("source_cut").Value == 1, Timeout, "the cut was counted");
        Assert.Equal(1, first.Metrics.VerifiedReadFailures.Value); // the volume's check fired
        await TestCluster.WaitUntilAsync(() => !File.Exists(path), Timeout, "the corrupt copy was quarantined");
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/bad?proxy=1").WaitAsync(Timeout)); // another replica serves it
    }

    /// <summary>
    /// The pump writes to the client by descriptor number. When the client goes away mid-body its owner (Kestrel)
    /// disposes the socket; the number must not be closed (and handed to the next accepted connection) while the
    /// pump still holds it, or the rest of this body goes to a stranger (CI saw a PUT answered with body bytes).
    /// </summary>
    [Fact]
    public async Task AClientThatLeavesMidBodyNeverHasItsDescriptorReusedUnderThePump()
    {
        var size = SpliceRelay.MinBytes;
        var etag = "ab12";
        using var stall = new SemaphoreSlim(0);
        var volume = new TcpListener(IPAddress.Loopback, 0);
        volume.Start();
        var serving = Task.Run(async () =>
        {
            using var s = await volume.AcceptSocketAsync();
            var request = new byte[4096];
            _ = await s.ReceiveAsync(request);
            await s.SendAsync(Encoding.ASCII.GetBytes(
                $"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nETag: \"{etag}\"\r\n{NodeHttp.VerifiedHeader}: 1\r\n\r\n"));
            await s.SendAsync(new byte[64 * 1024]);
            await stall.WaitAsync(Timeout); // the volume stalls: the pump waits for it
            var rest = new byte[size - (64 * 1024)];
            Array.Fill(rest, (byte)'X');
            try
            {
                await s.SendAsync(rest);
            }
            catch (SocketException)
            {
            }
        });
        var front = new TcpListener(IPAddress.Loopback, 0);
        front.Start();
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)front.LocalEndpoint).Port);
        var server = await front.AcceptSocketAsync();
        var fd = (long)server.Handle;
        var relay = SpliceRelay.RelayAsync(new Uri($"http://127.0.0.1:{((IPEndPoint)volume.LocalEndpoint).Port}/blob"), null, etag, size, new RawSocket(server), CancellationToken.None);

        // The head and the first 64 KiB arrive: the pump runs, then waits for the stalled volume.
        var got = 0;
        var buf = new byte[256 * 1024];
        while (got < 64 * 1024)
        {
            var n = await client.GetStream().ReadAsync(buf).AsTask().WaitAsync(Timeout);
            Assert.True(n > 0, "the relay ended before the body started");
            got += n;
        }
        client.Client.LingerState = new LingerOption(true, 0);
        client.Close(); // RST, as a client that drops a download does
        await Task.Run(server.Dispose).WaitAsync(Timeout); // what Kestrel does with the connection then

        // New connections take the lowest free descriptors: without a held reference, one gets the old number.
        var strangers = new List<(TcpClient Client, Socket Server)>();
        try
        {
            for (var i = 0; i < 16; i++)
            {
                var c = new TcpClient();
                await c.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)front.LocalEndpoint).Port);
                strangers.Add((c, await front.AcceptSocketAsync()));
            }
            stall.Release(); // the volume sends the rest of the body
            foreach (var (c, _) in strangers)
            {
                var stream = c.GetStream();
                using var quiet = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
                var leaked = await Record.ExceptionAsync(async () => Assert.Equal(0, await stream.ReadAsync(buf, quiet.Token)));
                Assert.True(leaked is OperationCanceledException,
                    $"a new connection (descriptor {strangers.First(x => x.Client == c).Server.Handle}, the relay's was {fd}) received bytes of another client's body");
            }
            var (outcome, _) = await relay.WaitAsync(Timeout);
            Assert.Equal(RelayOutcome.ClientGone, outcome);
            await serving.WaitAsync(Timeout);
        }
        finally
        {
            foreach (var (c, srv) in strangers)
            {
                c.Dispose();
                srv.Dispose();
            }
            volume.Stop();
            front.Stop();
        }
    }

    /// <summary>A server socket of ours answered raw, as Kestrel's would be (also used by ReadHandoffTests).</summary>
    internal sealed class RawSocket(Socket socket) : IRawResponse
    {
        public Socket Socket => socket;

        public bool KeepAlive => false;

        public byte[]? Head(long length) => Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n");

        public void Close() => socket.Dispose();

        public void Sent(long bodyBytes) => socket.Dispose();
    }
}
