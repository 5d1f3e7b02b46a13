using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using NanoKv.Coordinator;
using NanoKv.Coordinator.Core;
using NanoKv.Core;
using NanoKv.Core.Hashing;
using NanoKv.Tests.Infrastructure;
using NanoKv.Volume;

namespace NanoKv.Tests.Perf;

/// <summary>
/// The volume's sendfile read port: coordinator redirects of plain GETs point at it; it sends verified bytes
/// (hashed from the locked mapping on a first read, from the verified pin after) and sends everything else to
/// the main port with a 307, so ranges, conditionals, errors and auth keep one implementation.
/// </summary>
public class ReadPortTests
{
    private const int MiB = 1024 * 1024;

    [Fact]
    public async Task RedirectedGetsAreServedByTheReadPortVerifiedThenPinned()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3);
        var data = RandomNumberGenerator.GetBytes((3 * MiB) + 11); // several chunks and a short last one
        (await c.Client.PutAsync($"{c.Url}/big", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        var volume = await FirstChoiceAsync(c, "big");
        Assert.NotNull(volume.ReadUrl);

        using (var resp = await c.Client.GetAsync($"{c.Url}/big"))
        {
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            Assert.StartsWith(volume.ReadUrl + "/", resp.RequestMessage!.RequestUri!.ToString(), StringComparison.Ordinal);
            Assert.Equal(data, await resp.Content.ReadAsByteArrayAsync());
            Assert.Equal($"\"{ContentHasher.Hash(data)}\"", resp.Headers.ETag?.Tag);
            Assert.Equal("blake3", resp.Headers.GetValues(VolumeServer.VerifiedHeader).Single());
            Assert.True(resp.Headers.Contains("X-NanoKv-Version"));
        }
        await CountedAsync(volume, "verified", 1); // hashed, then pinned
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/big"));
        await CountedAsync(volume, "pinned", 1); // sent from the verified pin
        Assert.Equal(0, volume.Metrics.SendfileReads.WithLabels("redirected").Value);
    }

    /// <summary>
    /// A redirect names the committed version the coordinator looked up. Followed after the key was deleted and
    /// written again, it must not return the new blob: that write may not be committed yet (or may be rolled
    /// back), and a later read through the coordinator could still say 404 — the read would flicker. Found by
    /// <c>LinearizabilityTests</c> under load.
    /// </summary>
    [Fact]
    public async Task ARedirectTakenBeforeADeleteAndRewriteNeverReadsTheNewWrite()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3);
        var old = RandomNumberGenerator.GetBytes((2 * MiB) + 3);
        (await c.Client.PutAsync($"{c.Url}/flip", new ByteArrayContent(old))).EnsureSuccessStatusCode();
        using var noFollow = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false });
        Uri location;
        using (var redirect = await noFollow.GetAsync($"{c.Url}/flip"))
        {
            Assert.True((int)redirect.StatusCode is 302 or 307, $"{redirect.StatusCode}");
            location = redirect.Headers.Location!;
        }
        Assert.Equal(old, await noFollow.GetByteArrayAsync(location)); // the version it names is there: served

        (await c.Client.DeleteAsync($"{c.Url}/flip")).EnsureSuccessStatusCode();
        var fresh = RandomNumberGenerator.GetBytes((2 * MiB) + 3);
        (await c.Client.PutAsync($"{c.Url}/flip", new ByteArrayContent(fresh))).EnsureSuccessStatusCode();

        // The read port sends the stale version to the main port, which answers 404 with the reason.
        using (var stale = await c.Client.GetAsync(location))
        {
            Assert.Equal(HttpStatusCode.NotFound, stale.StatusCode);
            Assert.Contains("changed since the coordinator's lookup", await stale.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        using (var ranged = new HttpRequestMessage(HttpMethod.Get, location))
        {
            ranged.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(0, 9);
            using var resp = await c.Client.SendAsync(ranged);
            Assert.Equal(HttpStatusCode.NotFound, resp.StatusCode);
        }
        Assert.Equal(fresh, await c.Client.GetByteArrayAsync($"{c.Url}/flip")); // a new lookup reads the new version
    }

    /// <summary>
    /// Proxied reads name the committed version too. Ranges are not hashed against the committed etag, so before
    /// that a ranged read would have relayed a rewrite's bytes that the metadata does not hold yet.
    /// </summary>
    [Fact]
    public async Task AProxiedRangeNeverReadsABlobOfAnotherVersionThanTheCommittedOne()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3);
        var committed = RandomNumberGenerator.GetBytes(MiB);
        (await c.Client.PutAsync($"{c.Url}/rewritten", new ByteArrayContent(committed))).EnsureSuccessStatusCode();
        // Every replica now holds another version: a rewrite on the volumes whose metadata has not committed.
        var other = RandomNumberGenerator.GetBytes(MiB);
        for (var i = 0; i < 3; i++)
        {
            await StoreAsync(c.Volume(i), "rewritten", other);
        }
        using var req = new HttpRequestMessage(HttpMethod.Get, $"{c.Url}/rewritten?proxy=1");
        req.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(0, 99);
        using var resp = await c.Client.SendAsync(req);
        // The metadata still names its version and no replica has it: a failure to report, never the other bytes.
        Assert.Equal(HttpStatusCode.ServiceUnavailable, resp.StatusCode);
    }

    [Fact]
    public async Task AProxiedReadOfAKeyDeletedOrRewrittenAfterItsLookupIsNotFoundAndBlamesNoVolume()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3);
        var store = c.Coordinator.Objects;
        var key = Encoding.UTF8.GetBytes("moving");
        (await c.Client.PutAsync($"{c.Url}/moving", new ByteArrayContent(RandomNumberGenerator.GetBytes(MiB)))).EnsureSuccessStatusCode();

        // Looked up, then deleted before the read reaches a replica: every replica lacks that version.
        var stale = store.Locate(key).Value!;
        Assert.Equal(HttpStatusCode.NoContent, (await c.Client.DeleteAsync($"{c.Url}/moving")).StatusCode);
        var sink = new MemorySink();
        var error = await store.ReadAsync(stale, null, sink, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(StoreErrorKind.NotFound, error?.Kind);
        Assert.Equal(0, sink.Buffer.Length);

        // Looked up, then deleted and written again: the replicas hold another version, which is not this read's.
        var again = RandomNumberGenerator.GetBytes(MiB);
        (await c.Client.PutAsync($"{c.Url}/moving", new ByteArrayContent(again))).EnsureSuccessStatusCode();
        var older = store.Locate(key).Value!;
        Assert.Equal(HttpStatusCode.NoContent, (await c.Client.DeleteAsync($"{c.Url}/moving")).StatusCode);
        (await c.Client.PutAsync($"{c.Url}/moving", new ByteArrayContent(RandomNumberGenerator.GetBytes(MiB)))).EnsureSuccessStatusCode();
        error = await store.ReadAsync(older, null, sink, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(StoreErrorKind.NotFound, error?.Kind);
        Assert.Equal(0, sink.Buffer.Length);

        // A replica without the version is no failed node: all three stay alive for the next read.
        Assert.All(c.Volumes, v => Assert.Equal(NodeStatus.Alive, c.Coordinator.Nodes.StatusOf(v!.NodeId)));
    }

    [Fact]
    public async Task EverythingButAPlainGetIsAnsweredByTheMainPort()
    {
        await using var c = await TestCluster.StartAsync(volumes: 1, replicas: 1);
        var data = RandomNumberGenerator.GetBytes(MiB);
        (await c.Client.PutAsync($"{c.Url}/obj", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        var volume = c.Volume(0);
        var direct = $"{volume.ReadUrl}/obj";

        using (var range = new HttpRequestMessage(HttpMethod.Get, direct))
        {
            range.Headers.Range = new RangeHeaderValue(100, 199);
            using var resp = await c.NoRedirect.SendAsync(range);
            Assert.Equal(HttpStatusCode.TemporaryRedirect, resp.StatusCode);
            Assert.Equal($"{volume.Url}/obj", resp.Headers.Location!.ToString());
        }
        using (var range = new HttpRequestMessage(HttpMethod.Get, direct))
        {
            range.Headers.Range = new RangeHeaderValue(100, 199);
            using var resp = await c.Client.SendAsync(range);
            Assert.Equal(HttpStatusCode.PartialContent, resp.StatusCode);
            Assert.Equal(data[100..200], await resp.Content.ReadAsByteArrayAsync());
        }
        using (var head = await c.Client.SendAsync(new HttpRequestMessage(HttpMethod.Head, direct)))
        {
            Assert.Equal(HttpStatusCode.OK, head.StatusCode);
            Assert.Equal(data.Length, head.Content.Headers.ContentLength);
        }
        using (var missing = await c.Client.GetAsync($"{volume.ReadUrl}/nope"))
        {
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
            await DataPathTests.AssertJsonError(missing, ApiError.Codes.NotFound);
        }
        using (var post = await c.NoRedirect.PostAsync(direct, new ByteArrayContent([1, 2, 3])))
        {
            Assert.Equal(HttpStatusCode.TemporaryRedirect, post.StatusCode); // a body is never read here
        }
        Assert.Equal(5, volume.Metrics.SendfileReads.WithLabels("redirected").Value);
        Assert.Equal(0, volume.Metrics.SendfileReads.WithLabels("verified").Value);
    }

    [Fact]
    public async Task KeepAlivePipeliningAndBadRequestsOverARawConnection()
    {
        await using var c = await TestCluster.StartAsync(volumes: 1, replicas: 1);
        var data = RandomNumberGenerator.GetBytes(200_000);
        (await c.Client.PutAsync($"{c.Url}/raw", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        var port = new Uri(c.Volume(0).ReadUrl!).Port;

        // Two requests in one write: both answered, in order, on the same connection.
        var twice = await ExchangeAsync(port, "GET /raw HTTP/1.1\r\nHost: x\r\n\r\nGET /raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        var first = twice.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 200 OK", twice, StringComparison.Ordinal);
        Assert.Contains($"Content-Length: {data.Length}", twice[..first], StringComparison.Ordinal);
        var second = twice.IndexOf("HTTP/1.1 200 OK", first + 4 + data.Length, StringComparison.Ordinal);
        Assert.Equal(first + 4 + data.Length, second);
        Assert.Contains("Connection: close", twice[second..], StringComparison.Ordinal);
        Assert.Equal(data, Encoding.Latin1.GetBytes(twice[(twice.IndexOf("\r\n\r\n", second, StringComparison.Ordinal) + 4)..]));

        Assert.StartsWith("HTTP/1.1 400 ", await ExchangeAsync(port, "NOT A REQUEST\r\n\r\n"), StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 400 ", await ExchangeAsync(port, "GET /raw HTTP/1.1\r\nno colon here\r\n\r\n"), StringComparison.Ordinal);
        // A bare LF in the target would split the Location header of a 307: refused.
        Assert.StartsWith("HTTP/1.1 400 ", await ExchangeAsync(port, "GET /raw\nSet-Cookie:x HTTP/1.1\r\nRange: bytes=0-1\r\n\r\n"), StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 431 ", await ExchangeAsync(port, "GET /raw HTTP/1.1\r\nX-Big: " + new string('a', 20_000) + "\r\n\r\n"), StringComparison.Ordinal);
    }

    /// <summary>
    /// A copy corrupted before anyone read it: the read port hashes it on its first read, holds the last chunk,
    /// cuts the transfer, quarantines the copy and reports it, so the next read is served by a good replica.
    /// </summary>
    [Fact]
    public async Task AFirstReadOfACorruptCopyIsCutAndTheCopyQuarantined()
    {
        await using var c = await TestCluster.StartAsync(volumes: 0, replicas: 3);
        for (var i = 0; i < 3; i++)
        {
            await c.AddVolumeAsync(); // joined volumes report a corrupt copy to the coordinator
        }
        var data = RandomNumberGenerator.GetBytes((2 * MiB) + 5);
        (await c.Client.PutAsync($"{c.Url}/bad", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        var volume = await FirstChoiceAsync(c, "bad");
        var path = volume.Store.BlobPath(Encoding.UTF8.GetBytes("bad"));
        Ops.OpsTests.FlipByte(path);

        using (var resp = await c.Client.GetAsync($"{c.Url}/bad", HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.StartsWith(volume.ReadUrl + "/", resp.RequestMessage!.RequestUri!.ToString(), StringComparison.Ordinal);
            var err = await Record.ExceptionAsync(() => resp.Content.ReadAsByteArrayAsync());
            Assert.True(err is HttpRequestException or IOException, $"expected a cut transfer, got {err?.ToString() ?? "the whole body"}");
        }
        Assert.Equal(1, volume.Metrics.VerifiedReadFailures.Value); // the check fired on this volume
        Assert.False(File.Exists(path), "the corrupt copy was not quarantined");
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/bad"));
    }

    [Fact]
    public async Task AVolumeWithoutAReadPortIsReadOnItsMainPort()
    {
        var dir = TempDir.Create("noreadport");
        await using var v = VolumeServer.Create(new VolumeOptions { DataDir = dir, Port = 0, ReadPort = -1, LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning });
        await v.StartAsync();
        Assert.Null(v.ReadUrl);
        using var http = new HttpClient();
        var health = await http.GetFromJsonAsync<VolumeHealth>($"{v.Url}/healthz");
        Assert.Null(health!.ReadUrl);
    }

    /// <summary>
    /// With pins off (or a blob not wholly cached, or over the budget) the read port still verifies: it walks the
    /// blob in locked 1 MiB windows, and a corrupt copy is cut before its last window and quarantined.
    /// </summary>
    [Fact]
    public async Task BlobsThatCannotBePinnedAreStreamedInLockedWindowsAndStillVerified()
    {
        var dir = TempDir.Create("windowed");
        await using var v = VolumeServer.Create(new VolumeOptions { DataDir = dir, Port = 0, PinBytes = 0, LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning });
        await v.StartAsync();
        var data = RandomNumberGenerator.GetBytes((3 * MiB) + 7);
        await StoreAsync(v, "win", data);
        using var http = new HttpClient();
        Assert.Equal(data, await http.GetByteArrayAsync($"{v.ReadUrl}/win"));
        Assert.Equal(data, await http.GetByteArrayAsync($"{v.ReadUrl}/win"));
        await CountedAsync(v, "streamed", 2); // hashed both times: nothing pinned
        Assert.Equal(0, v.Metrics.SendfileReads.WithLabels("pinned").Value + v.Metrics.SendfileReads.WithLabels("redirected").Value);

        var path = v.Store.BlobPath(Encoding.UTF8.GetBytes("win"));
        Ops.OpsTests.FlipByte(path);
        using (var resp = await http.GetAsync($"{v.ReadUrl}/win", HttpCompletionOption.ResponseHeadersRead))
        {
            var err = await Record.ExceptionAsync(() => resp.Content.ReadAsByteArrayAsync());
            Assert.True(err is HttpRequestException or IOException, $"expected a cut transfer, got {err?.ToString() ?? "the whole body"}");
        }
        Assert.Equal(1, v.Metrics.VerifiedReadFailures.Value);
        Assert.False(File.Exists(path), "the corrupt copy was not quarantined");
    }

    /// <summary>
    /// A blob over the lock budget is verified in windows once; its mapping is kept (loose pin) and later reads
    /// send it without hashing while every page is still present. Pages reclaimed since (MADV_PAGEOUT, as memory
    /// pressure would) send the next read back to hashing, and a byte flipped on disk is caught as before.
    /// </summary>
    [Fact]
    public async Task AVerifiedBlobOverTheLockBudgetIsReadUnhashedUntilItsPagesAreReclaimed()
    {
        var dir = TempDir.Create("loose");
        await using var v = VolumeServer.Create(new VolumeOptions { DataDir = dir, Port = 0, PinBytes = MiB, LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning });
        await v.StartAsync();
        var data = RandomNumberGenerator.GetBytes((3 * MiB) + 7);
        await StoreAsync(v, "loose", data);
        using var http = new HttpClient();
        Assert.Equal(data, await http.GetByteArrayAsync($"{v.ReadUrl}/loose"));
        await CountedAsync(v, "streamed", 1);
        Assert.Equal(data, await http.GetByteArrayAsync($"{v.ReadUrl}/loose"));
        await CountedAsync(v, "mapped", 1); // not hashed again

        var path = v.Store.BlobPath(Encoding.UTF8.GetBytes("loose"));
        using (var lease = v.Pins.TryAcquire(path, allowLoose: true))
        {
            Assert.False(lease!.Locked);
            VerifiedPinsTests.PageOut(lease.Address, lease.Length);
            Assert.False(VerifiedPins.AllPresent(lease.Address, lease.Length), "MADV_PAGEOUT reclaimed no page: the fault did not fire");
        }
        Assert.Equal(data, await http.GetByteArrayAsync($"{v.ReadUrl}/loose"));
        await CountedAsync(v, "streamed", 2); // hashed again, then kept again
        Assert.Equal(1, v.Metrics.SendfileReads.WithLabels("mapped").Value);

        Ops.OpsTests.FlipByte(path);
        using (var resp = await http.GetAsync($"{v.ReadUrl}/loose", HttpCompletionOption.ResponseHeadersRead))
        {
            var err = await Record.ExceptionAsync(() => resp.Content.ReadAsByteArrayAsync());
            Assert.True(err is HttpRequestException or IOException, $"expected a cut transfer, got {err?.ToString() ?? "the whole body"}");
        }
        Assert.Equal(1, v.Metrics.VerifiedReadFailures.Value);
        Assert.Equal(1, v.Metrics.SendfileReads.WithLabels("mapped").Value);
    }

    /// <summary>
    /// A committed blob from 8 MiB that the volume wrote through the page cache (the replica GETs go to) is hashed
    /// and pinned in the background after its commit, so its first GET is sent without hashing; with
    /// --no-pin-on-commit the first GET hashes as before. A byte flipped on disk after the commit is still caught.
    /// </summary>
    [Fact]
    public async Task ACommittedBlobIsVerifiedAndPinnedBeforeItsFirstGet()
    {
        var data = RandomNumberGenerator.GetBytes((int)CommitPins.From + 5);
        foreach (var pinOnCommit in new[] { true, false })
        {
            var dir = TempDir.Create("commitpin");
            await using var v = VolumeServer.Create(new VolumeOptions { DataDir = dir, Port = 0, PinOnCommit = pinOnCommit, LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning });
            await v.StartAsync();
            // The small one first: the queue is FIFO, so had it been queued it would be pinned before the large one.
            await StoreAsync(v, "small", data.AsSpan(0, (int)CommitPins.From - 1).ToArray(), commitThroughApi: true);
            await StoreAsync(v, "fresh", data, commitThroughApi: true);
            using var http = new HttpClient();
            if (pinOnCommit)
            {
                await TestCluster.WaitUntilAsync(() => v.Metrics.CommitPins.WithLabels("pinned").Value == 1, TimeSpan.FromSeconds(10), "the committed blob pinned");
            }
            Assert.Equal(data, await http.GetByteArrayAsync($"{v.ReadUrl}/fresh"));
            await CountedAsync(v, pinOnCommit ? "pinned" : "verified", 1);
            Assert.Equal(0, v.Metrics.SendfileReads.WithLabels(pinOnCommit ? "verified" : "pinned").Value);
            Assert.Equal(pinOnCommit ? 1 : 0, v.Metrics.CommitPins.WithLabels("pinned").Value); // the small one is not queued
        }

        var flipped = TempDir.Create("commitpin-flip");
        await using var f = VolumeServer.Create(new VolumeOptions { DataDir = flipped, Port = 0, LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning });
        await f.StartAsync();
        await StoreAsync(f, "fresh", data, commitThroughApi: true);
        await TestCluster.WaitUntilAsync(() => f.Metrics.CommitPins.WithLabels("pinned").Value == 1, TimeSpan.FromSeconds(10), "the committed blob pinned");
        var path = f.Store.BlobPath(Encoding.UTF8.GetBytes("fresh"));
        Ops.OpsTests.FlipByte(path);
        using var client = new HttpClient();
        using (var resp = await client.GetAsync($"{f.ReadUrl}/fresh", HttpCompletionOption.ResponseHeadersRead))
        {
            var err = await Record.ExceptionAsync(() => resp.Content.ReadAsByteArrayAsync());
            Assert.True(err is HttpRequestException or IOException, $"expected a cut transfer, got {err?.ToString() ?? "the whole body"}");
        }
        Assert.Equal(1, f.Metrics.VerifiedReadFailures.Value);
    }

    /// <summary>Awaits a read-port outcome count: the server counts a read once its last byte left, which the client may see first.</summary>
    private static Task CountedAsync(VolumeServer v, string outcome, double count) => TestCluster.WaitUntilAsync(
        () => v.Metrics.SendfileReads.WithLabels(outcome).Value == count, TimeSpan.FromSeconds(10), $"{count} {outcome} reads counted");

    /// <summary>Stores a blob on a volume through its upload steps (no coordinator).</summary>
    /// <param name="commitThroughApi">commit with POST /internal/commit, as a coordinator does</param>
    private static async Task StoreAsync(VolumeServer v, string key, byte[] data, bool commitThroughApi = false)
    {
        var id = Guid.NewGuid().ToString("N");
        var k = Encoding.UTF8.GetBytes(key);
        v.Store.Prepare(k, id, data.Length);
        await v.Store.ReceiveAsync(id, System.IO.Pipelines.PipeReader.Create(new MemoryStream(data)), null, CancellationToken.None);
        if (!commitThroughApi)
        {
            v.Store.Commit(id, k, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000);
            return;
        }
        using var http = new HttpClient();
        using var resp = await http.PostAsync($"{v.Url}/internal/commit?upload_id={id}&key={Uri.EscapeDataString(key)}", null);
        resp.EnsureSuccessStatusCode();
    }

    /// <summary>The volume a plain-GET redirect for key points at (by its read port).</summary>
    internal static async Task<VolumeServer> FirstChoiceAsync(TestCluster c, string key)
    {
        await TestCluster.WaitUntilAsync(
            () => c.Volumes.All(v => v is null || c.Coordinator.Nodes.ReadUrlOf(v.NodeId) == v.ReadUrl),
            TimeSpan.FromSeconds(30),
            "the coordinator learned every read port");
        using var resp = await c.NoRedirect.GetAsync($"{c.Url}/{key}");
        Assert.Equal(HttpStatusCode.Found, resp.StatusCode);
        var location = resp.Headers.Location!.ToString();
        return c.Volumes.Single(v => v is not null && location.StartsWith((v.ReadUrl ?? v.Url) + "/", StringComparison.Ordinal))!;
    }

    /// <summary>Writes raw bytes to the read port and reads until the server closes the connection.</summary>
    private static async Task<string> ExchangeAsync(int port, string request)
    {
        using var client = new TcpClient();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await client.ConnectAsync(IPAddress.Loopback, port, cts.Token);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.Latin1.GetBytes(request), cts.Token);
        using var got = new MemoryStream();
        await stream.CopyToAsync(got, cts.Token);
        return Encoding.Latin1.GetString(got.ToArray());
    }
}
