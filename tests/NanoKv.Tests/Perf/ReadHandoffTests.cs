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
/// Full proxied reads (S3 GET, ?proxy=1) of blobs from SocketHandoff.MinBytes are handed to a replica on the
/// coordinator's host: the volume gets the client's connection and sends head and body itself, from its verified
/// pin, or for a first read after checking the whole blob (pinned if cached, else in memory up to 8 MiB). The
/// client sees the relay's head and the exact bytes; what the volume cannot serve that way it declines before the
/// first byte, and the read is relayed (or, a bad copy, read from the next replica).
/// </summary>
public class ReadHandoffTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task AFullProxyReadIsHandedToTheVolumeWhichSendsItFromItsVerifiedPin()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3);
        var data = RandomNumberGenerator.GetBytes((int)CommitPins.From + 11); // pinned on commit
        (await c.Client.PutAsync($"{c.Url}/big", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        (await c.Client.PutAsync($"{c.Url}/small", new ByteArrayContent(new byte[1000]))).EnsureSuccessStatusCode();
        var first = await FirstChoiceAsync(c, "big");
        await TestCluster.WaitUntilAsync(() => first.Metrics.CommitPins.WithLabels("pinned").Value == 1, Timeout, "the committed blob pinned");
        var handed = c.Coordinator.Objects.Metrics.ReadHandoffs.WithLabels("sent");

        using (var resp = await c.Client.GetAsync($"{c.Url}/big?proxy=1").WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            Assert.Equal(data, await resp.Content.ReadAsByteArrayAsync().WaitAsync(Timeout));
            Assert.Equal($"\"{ContentHasher.Hash(data)}\"", resp.Headers.ETag?.Tag);
            Assert.Equal(data.Length, resp.Content.Headers.ContentLength);
            Assert.Equal("application/octet-stream", resp.Content.Headers.ContentType?.MediaType);
            Assert.True(resp.Headers.Date is not null, "no Date header");
            Assert.NotEqual(true, resp.Headers.ConnectionClose); // the connection carries on (ResponseGate)
        }
        await TestCluster.WaitUntilAsync(() => handed.Value == 1, Timeout, "the read was counted as handed off");
        Assert.Equal(1, first.Metrics.SendfileReads.WithLabels("handoff").Value); // the volume sent it, from its pin
        Assert.Equal(0, c.Coordinator.Objects.Metrics.SpliceRelays.WithLabels("sent").Value); // no byte crossed the coordinator

        // A range and a small blob are relayed.
        using (var req = new HttpRequestMessage(HttpMethod.Get, $"{c.Url}/big?proxy=1") { Headers = { Range = new(5, 14) } })
        using (var resp = await c.Client.SendAsync(req).WaitAsync(Timeout))
        {
            Assert.Equal(HttpStatusCode.PartialContent, resp.StatusCode);
            Assert.Equal(data[5..15], await resp.Content.ReadAsByteArrayAsync().WaitAsync(Timeout));
        }
        Assert.Equal(new byte[1000], await c.Client.GetByteArrayAsync($"{c.Url}/small?proxy=1").WaitAsync(Timeout));
        Assert.Equal(1, handed.Value);
        Assert.Equal(0, c.Coordinator.Objects.Metrics.ReadHandoffs.WithLabels("declined").Value);
    }

    [Fact]
    public async Task ABlobNotVerifiedYetIsDeclinedAndRelayedThenHandedOffOnceTheReadPortPinnedIt()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3, configureVolume: o => o with { PinOnCommit = false });
        var data = RandomNumberGenerator.GetBytes((int)HandoffServer.FirstReadMaxBytes + 3); // too large to check in memory
        (await c.Client.PutAsync($"{c.Url}/fresh", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        var first = await FirstChoiceAsync(c, "fresh");
        var metrics = c.Coordinator.Objects.Metrics;

        // Never read since its write, and its pages gone from the page cache: the volume cannot pin it without
        // reading the disk, and it is too large to check in memory, so it declines; the relay's read port verifies it.
        Assert.True(EvictFromPageCache(first.Store.BlobPath(Encoding.UTF8.GetBytes("fresh"))), "posix_fadvise failed");
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/fresh?proxy=1").WaitAsync(Timeout));
        Assert.Equal(1, metrics.ReadHandoffs.WithLabels("declined").Value);
        await TestCluster.WaitUntilAsync(() => metrics.SpliceRelays.WithLabels("sent").Value == 1, Timeout, "the read was spliced");
        await TestCluster.WaitUntilAsync(() => first.Metrics.SendfileReads.WithLabels("streamed").Value == 1, Timeout, "the read port verified it (and kept it mapped)");

        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/fresh?proxy=1").WaitAsync(Timeout));
        await TestCluster.WaitUntilAsync(() => metrics.ReadHandoffs.WithLabels("sent").Value == 1, Timeout, "the second read was handed off");
        Assert.Equal(1, first.Metrics.SendfileReads.WithLabels("handoff").Value);

        // A copy changed on disk since it was verified no longer matches its pin: the volume pins it again and
        // checks it whole before the first byte, declines its bad copy, and the next replica serves the read whole.
        Ops.OpsTests.FlipByte(first.Store.BlobPath(Encoding.UTF8.GetBytes("fresh")));
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/fresh?proxy=1").WaitAsync(Timeout));
        Assert.Equal(1, metrics.ReadHandoffs.WithLabels("corrupt").Value);
        Assert.Equal(1, first.Metrics.SendfileReads.WithLabels("handoff").Value);
        Assert.Equal(1, first.Metrics.Quarantines.Value);
    }

    [Fact]
    public async Task AFirstReadOfASmallerBlobIsCheckedWholeByTheVolumeAndABadCopyIsSkippedBeforeTheFirstByte()
    {
        await using var c = await TestCluster.StartAsync(volumes: 0, replicas: 3);
        for (var i = 0; i < 3; i++)
        {
            await c.AddVolumeAsync(); // joined, so a volume can report the bad copy it finds
        }
        var data = RandomNumberGenerator.GetBytes((int)SocketHandoff.MinBytes + 5);
        (await c.Client.PutAsync($"{c.Url}/mid", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        var first = await FirstChoiceAsync(c, "mid");
        var metrics = c.Coordinator.Objects.Metrics;

        // Below the commit-pin size and never read: not pinned, yet handed off; the volume checked it whole first.
        Assert.Equal(0, first.Metrics.CommitPins.WithLabels("pinned").Value);
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/mid?proxy=1").WaitAsync(Timeout));
        await TestCluster.WaitUntilAsync(() => metrics.ReadHandoffs.WithLabels("sent").Value == 1, Timeout, "the read was handed off");
        Assert.Equal(1, first.Metrics.SendfileReads.WithLabels("handoff-verified").Value);
        Assert.Equal(0, metrics.SpliceRelays.WithLabels("sent").Value);

        // A bad copy there: found before the first byte, declined, and the next replica serves the same read whole.
        Ops.OpsTests.FlipByte(first.Store.BlobPath(Encoding.UTF8.GetBytes("mid")));
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/mid?proxy=1").WaitAsync(Timeout));
        Assert.Equal(1, metrics.ReadHandoffs.WithLabels("corrupt").Value);
        Assert.Equal(1, first.Metrics.Quarantines.Value); // out of blobs/: verify sees it missing, repair re-copies it
        await TestCluster.WaitUntilAsync(() => metrics.CorruptReports.Value == 1, Timeout, "the volume reported its bad copy");
    }

    /// <summary>
    /// A first read whose pages are not cached is checked whole through a mapping and the mapping is kept (a loose
    /// pin), so the next read goes out without hashing again. A copy read into memory kept nothing: in a mixed load
    /// every blob was hashed twice.
    /// </summary>
    [Fact]
    public async Task AnUncachedFirstReadIsCheckedWholeAndItsMappingKeptForTheNextRead()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3, configureVolume: o => o with { PinOnCommit = false });
        var data = RandomNumberGenerator.GetBytes((2 * (int)SocketHandoff.MinBytes) + 7);
        (await c.Client.PutAsync($"{c.Url}/uncached", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        var first = await FirstChoiceAsync(c, "uncached");
        var metrics = c.Coordinator.Objects.Metrics;
        Assert.True(EvictFromPageCache(first.Store.BlobPath(Encoding.UTF8.GetBytes("uncached"))), "posix_fadvise failed");

        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/uncached?proxy=1").WaitAsync(Timeout));
        await TestCluster.WaitUntilAsync(() => metrics.ReadHandoffs.WithLabels("sent").Value == 1, Timeout, "the first read was handed off");
        Assert.Equal(1, first.Metrics.SendfileReads.WithLabels("handoff-verified").Value);
        Assert.Equal(0, first.Metrics.SendfileReads.WithLabels("handoff").Value);

        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/uncached?proxy=1").WaitAsync(Timeout));
        await TestCluster.WaitUntilAsync(() => metrics.ReadHandoffs.WithLabels("sent").Value == 2, Timeout, "the second read was handed off");
        Assert.Equal(1, first.Metrics.SendfileReads.WithLabels("handoff").Value); // from the kept mapping, not hashed again
        Assert.Equal(1, first.Metrics.SendfileReads.WithLabels("handoff-verified").Value);
    }

    /// <summary>
    /// A handed-off response keeps its connection: Kestrel answers the request with a stand-in that the
    /// connection's ResponseGate drops, and the next request on the same connection is answered in order, whether
    /// it is handed off again, relayed by Kestrel, or sent before the previous answer was read (pipelined).
    /// </summary>
    [Fact]
    public async Task AHandedOffResponseKeepsTheConnectionForTheNextRequests()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3);
        var big = RandomNumberGenerator.GetBytes((int)CommitPins.From + 7);
        var mid = RandomNumberGenerator.GetBytes((int)SocketHandoff.MinBytes - 4096); // relayed through Kestrel
        (await c.Client.PutAsync($"{c.Url}/big", new ByteArrayContent(big))).EnsureSuccessStatusCode();
        (await c.Client.PutAsync($"{c.Url}/mid", new ByteArrayContent(mid))).EnsureSuccessStatusCode();
        var first = await FirstChoiceAsync(c, "big");
        await TestCluster.WaitUntilAsync(() => first.Metrics.CommitPins.WithLabels("pinned").Value == 1, Timeout, "the committed blob pinned");
        var handed = c.Coordinator.Objects.Metrics.ReadHandoffs.WithLabels("sent");

        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, new Uri(c.Url).Port).WaitAsync(Timeout);
        var http = new RawHttpClient(tcp.GetStream());
        static byte[] Get(string key) => Encoding.ASCII.GetBytes($"GET /{key}?proxy=1 HTTP/1.1\r\nHost: nanokv\r\n\r\n");

        async Task GetAsync(string key, byte[] want)
        {
            await tcp.GetStream().WriteAsync(Get(key)).AsTask().WaitAsync(Timeout);
            var (head, body) = await http.ReadResponseAsync();
            Assert.StartsWith("HTTP/1.1 200", head, StringComparison.Ordinal);
            Assert.DoesNotContain("Connection: close", head, StringComparison.OrdinalIgnoreCase);
            Assert.Equal(want, body);
        }

        // Handed off, then (Kestrel relaying a smaller blob in between) handed off again, all on one connection.
        // The replica a read tries first can change under load (a late heartbeat puts it behind the others, which
        // decline: not pinned there, so the read is spliced), so each
        // handoff is awaited over a bounded number of reads, every one of them checked byte for byte.
        async Task HandOffOnceMoreAsync()
        {
            var before = handed.Value;
            for (var i = 0; i < 10 && handed.Value == before; i++)
            {
                await GetAsync("big", big);
            }
            Assert.True(handed.Value > before, $"no read handed off in 10 (declined: {c.Coordinator.Objects.Metrics.ReadHandoffs.WithLabels("declined").Value})");
        }
        await HandOffOnceMoreAsync();
        await GetAsync("big", big);
        await GetAsync("mid", mid);
        await HandOffOnceMoreAsync();

        // Pipelined: both requests in one write, the answers read afterwards, in order and byte for byte.
        await tcp.GetStream().WriteAsync(Get("mid").Concat(Get("big")).ToArray()).AsTask().WaitAsync(Timeout);
        Assert.Equal(mid, (await http.ReadResponseAsync()).Body);
        Assert.Equal(big, (await http.ReadResponseAsync()).Body);
        Assert.Equal(0, c.Coordinator.Objects.Metrics.ReadHandoffs.WithLabels("source_cut").Value);
    }

    /// <summary>HTTP/1.1 responses with a Content-Length, read one after another off one connection.</summary>
    private sealed class RawHttpClient(NetworkStream stream)
    {
        private readonly byte[] _buffer = new byte[1 << 20];
        private int _start;
        private int _end;

        public async Task<(string Head, byte[] Body)> ReadResponseAsync()
        {
            int at;
            while ((at = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n\r\n"u8)) < 0)
            {
                await FillAsync();
            }
            var head = Encoding.ASCII.GetString(_buffer, _start, at + 4);
            _start += at + 4;
            var line = head.Split("\r\n").Single(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
            var body = new byte[int.Parse(line["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture)];
            for (var got = 0; got < body.Length;)
            {
                if (_start == _end)
                {
                    await FillAsync();
                }
                var n = Math.Min(body.Length - got, _end - _start);
                _buffer.AsSpan(_start, n).CopyTo(body.AsSpan(got));
                (got, _start) = (got + n, _start + n);
            }
            return (head, body);
        }

        private async Task FillAsync()
        {
            if (_start > 0)
            {
                _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
                (_end, _start) = (_end - _start, 0);
            }
            var n = await stream.ReadAsync(_buffer.AsMemory(_end)).AsTask().WaitAsync(Timeout);
            Assert.True(n > 0, "the server closed the connection");
            _end += n;
        }
    }

    [Fact]
    public void TheRequestRoundTripsAndMalformedOnesAreRefused()
    {
        var r = new HandoffRequest(Encoding.UTF8.GetBytes("a/b c\nd"), 1234567, "abcdef", 99, Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\n\r\n"));
        var wire = SocketHandoff.Encode("s3cret", r);
        var back = SocketHandoff.Decode(wire, out var secret);
        Assert.NotNull(back);
        Assert.Equal("s3cret", secret);
        Assert.Equal(r.Key, back.Key);
        Assert.Equal((r.Version, r.Etag, r.Size), (back.Version, back.Etag, back.Size));
        Assert.Equal(r.Head, back.Head);

        Assert.Null(SocketHandoff.Decode(wire.AsSpan(0, 10), out _)); // cut short
        Assert.Null(SocketHandoff.Decode(SocketHandoff.Encode(null, r with { Head = [] }), out _)); // no head
        Assert.Null(SocketHandoff.Decode(SocketHandoff.Encode(null, r with { Etag = "" }), out _));
        var wrongMagic = wire.ToArray();
        wrongMagic[0] = (byte)'X';
        Assert.Null(SocketHandoff.Decode(wrongMagic, out _));
        Assert.Null(SocketHandoff.Decode(Encoding.UTF8.GetBytes("NKH1\n\nkey\n-1\netag\n5\nHEAD"), out _)); // a negative version
    }

    /// <summary>
    /// A volume that dies mid-send hangs up its end of the handoff without an answer: the coordinator must
    /// count a cut (never a sent body), and the client must see fewer bytes than its Content-Length.
    /// </summary>
    [Fact]
    public async Task AVolumeThatHangsUpMidBodyIsACutNeverASentResponse()
    {
        var size = SocketHandoff.MinBytes;
        var path = Path.Combine(TempDir.Create("handoff"), "h.sock");
        using var volume = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        volume.Bind(new UnixDomainSocketEndPoint(path));
        volume.Listen(1);
        var dying = Task.Run(async () =>
        {
            using var channel = await volume.AcceptAsync();
            var buffer = new byte[SocketHandoff.MaxMessage];
            var n = SocketHandoff.Receive((int)channel.Handle, buffer, out var passed);
            Assert.True(n > 0 && passed >= 0, "no request or no connection passed");
            var request = SocketHandoff.Decode(buffer.AsSpan(0, n), out _)!;
            using var client = new Socket(new SafeSocketHandle(passed, ownsHandle: true));
            client.Send(request.Head);
            client.Send(new byte[64 * 1024]);
            channel.Close(); // dies: the channel hangs up, no answer
        });
        using var pair = await ClientConnection.OpenAsync();
        var raw = new SpliceRelayTests.RawSocket(pair.Server);
        var (outcome, _) = await SocketHandoff.HandOffAsync(path, null, Encoding.UTF8.GetBytes("k"), 1, "ab", size, raw).WaitAsync(Timeout);
        await dying.WaitAsync(Timeout);
        Assert.Equal(RelayOutcome.SourceCut, outcome);
        raw.Close(); // what the coordinator does after a cut

        var got = await pair.ReadToEndAsync();
        Assert.True(got < size, $"the client received {got} bytes, a whole {size}-byte body");
        Assert.True(got >= 64 * 1024, "the volume's bytes never arrived");
    }

    [Fact]
    public async Task AVolumeDeclinesWhatItDoesNotHoldWithoutWritingToTheClient()
    {
        await using var v = VolumeServer.Create(new VolumeOptions { DataDir = TempDir.Create("handoff-vol"), Port = 0, LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning });
        await v.StartAsync();
        Assert.NotNull(v.HandoffSocket);
        using var pair = await ClientConnection.OpenAsync();
        var (outcome, why) = await SocketHandoff.HandOffAsync(v.HandoffSocket!, null, Encoding.UTF8.GetBytes("absent"), 1, "ab", SocketHandoff.MinBytes, new SpliceRelayTests.RawSocket(pair.Server)).WaitAsync(Timeout);
        Assert.Equal(RelayOutcome.NotStarted, outcome);
        Assert.Contains("not this version", why, StringComparison.Ordinal);
        // The volume answers only after anything it wrote is in the socket: end our side and read it all.
        pair.Server.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await pair.ReadToEndAsync());
    }

    /// <summary>A client's connection to a server socket of ours (what Kestrel would hold), on loopback.</summary>
    private sealed class ClientConnection : IDisposable
    {
        private readonly TcpListener _front;
        private readonly TcpClient _user;

        private ClientConnection(TcpListener front, TcpClient user, Socket server) => (_front, _user, Server) = (front, user, server);

        public Socket Server { get; }

        public static async Task<ClientConnection> OpenAsync()
        {
            var front = new TcpListener(IPAddress.Loopback, 0);
            front.Start();
            var user = new TcpClient();
            await user.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)front.LocalEndpoint).Port).WaitAsync(Timeout);
            return new ClientConnection(front, user, await front.AcceptSocketAsync().WaitAsync(Timeout));
        }

        /// <summary>Bytes the client receives until the connection ends.</summary>
        public async Task<long> ReadToEndAsync()
        {
            var got = 0L;
            var buf = new byte[256 * 1024];
            int read;
            while ((read = await _user.GetStream().ReadAsync(buf).AsTask().WaitAsync(Timeout)) > 0)
            {
                got += read;
            }
            return got;
        }

        public void Dispose()
        {
            Server.Dispose();
            _user.Dispose();
            _front.Stop();
        }
    }

    /// <summary>Drops a file's (clean) pages from the page cache.</summary>
    private static bool EvictFromPageCache(string path)
    {
        using var file = File.OpenHandle(path);
        return posix_fadvise((int)file.DangerousGetHandle(), 0, 0, 4 /* POSIX_FADV_DONTNEED */) == 0;
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int posix_fadvise(int fd, long offset, long len, int advice);

    /// <summary>The replica the coordinator tries first, once it knows every volume's handoff socket.</summary>
    private static async Task<VolumeServer> FirstChoiceAsync(TestCluster c, string key)
    {
        await TestCluster.WaitUntilAsync(
            () => c.Volumes.All(v => v is null || (v.HandoffSocket is not null && c.Coordinator.Nodes.HandoffSocketOf(v.NodeId) == v.HandoffSocket)),
            Timeout, "the coordinator learned every handoff socket");
        return await ReadPortTests.FirstChoiceAsync(c, key);
    }
}
