using System.Net;
using System.Security.Cryptography;
using System.Text;
using NanoKv.Core;
using NanoKv.Core.Hashing;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Perf;

/// <summary>
/// Full proxied reads (S3 GET, ?proxy=1) of blobs from SpliceRelay.MinBytes (8 MiB) are spliced from the volume's read port to the
/// client's socket: the client gets the same head the ordinary relay sends (plus Connection: close) and the
/// exact bytes; a copy that fails its hash after the head went out is cut, never ended normally.
/// </summary>
public class SpliceRelayTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task AFullProxyReadIsSplicedOthersTakeTheOrdinaryRelay()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3);
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
            Assert.True(resp.Headers.ConnectionClose, "a spliced response closes its connection");
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
        await using var c = await TestCluster.StartAsync(volumes: 0, replicas: 3);
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
            Assert.True(resp.Headers.ConnectionClose, "not the spliced path");
            var err = await Record.ExceptionAsync(() => resp.Content.ReadAsByteArrayAsync().WaitAsync(Timeout));
            Assert.True(err is HttpRequestException or IOException, $"expected a cut transfer, got {err?.ToString() ?? "the whole body"}");
        }
        await TestCluster.WaitUntilAsync(
            () => c.Coordinator.Objects.Metrics.SpliceRelays.WithLabels("source_cut").Value == 1, Timeout, "the cut was counted");
        Assert.Equal(1, first.Metrics.VerifiedReadFailures.Value); // the volume's check fired
        await TestCluster.WaitUntilAsync(() => !File.Exists(path), Timeout, "the corrupt copy was quarantined");
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/bad?proxy=1").WaitAsync(Timeout)); // another replica serves it
    }
}
