using System.IO.Pipelines;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests;

/// <summary>Uploads written around the page cache (O_DIRECT): exact bytes at every size, and only on the replicas reads do not go to.</summary>
public class DirectWriteTests
{
    /// <summary>Whether the filesystem under dir takes O_DIRECT (tmpfs on older kernels does not: then the fallback is what runs).</summary>
    private static bool DirectSupported(string dir)
    {
        using var h = File.OpenHandle(Path.Combine(dir, "probe"), FileMode.Create, FileAccess.Write);
        using var w = DirectWriter.TryStart(h);
        return w is not null;
    }

    [Theory]
    [InlineData(0, true)]
    [InlineData(1, true)]
    [InlineData(4095, true)]
    [InlineData(4096, true)]
    [InlineData(4097, true)]
    [InlineData(DirectWriter.BufferBytes - 1, true)]
    [InlineData(DirectWriter.BufferBytes, true)]
    [InlineData(DirectWriter.BufferBytes + 1, true)]
    [InlineData(3 * DirectWriter.BufferBytes + 12_345, true)]
    [InlineData(3 * DirectWriter.BufferBytes + 12_345, false)]
    public async Task EveryByteLandsAtEverySizeAndThePathIsTheOneAsked(int size, bool bypassCache)
    {
        var dir = TempDir.Create("direct");
        try
        {
            var direct = DirectSupported(dir);
            var data = RandomNumberGenerator.GetBytes(size);
            var path = Path.Combine(dir, "upload");
            CopyResult result;
            // Odd read sizes: the aligned buffer fills across segment boundaries at unaligned points.
            var reader = PipeReader.Create(new MemoryStream(data), new StreamPipeReaderOptions(bufferSize: 7001));
            using (var handle = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.Read))
            {
                result = await FileReceiver.CopyAsync(reader, handle, long.MaxValue, CancellationToken.None, bypassCache).WaitAsync(TimeSpan.FromSeconds(30));
            }
            Assert.True(result.Ok, result.Error?.ToString());
            Assert.Equal(size, result.Bytes);
            Assert.Equal(Blake3.Hasher.Hash(data).ToString(), result.Etag);
            Assert.Equal(data, await File.ReadAllBytesAsync(path));
            Assert.Equal(!bypassCache ? FileWrite.Cached : direct ? FileWrite.Direct : FileWrite.DirectRefused, result.Write);
        }
        finally
        {
            TempDir.Delete(dir);
        }
    }

    [Fact]
    public async Task OnlyTheReplicaReadsGoToFirstKeepsTheObjectCachedAndEveryReplicaHoldsIt()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3);
        var data = RandomNumberGenerator.GetBytes(3 * 1024 * 1024 + 5);
        using var put = await c.Client.PutAsync($"{c.Url}/direct/obj", new ByteArrayContent(data));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        var replicas = JsonDocument.Parse(await put.Content.ReadAsStringAsync()).RootElement.GetProperty("replicas").EnumerateArray().Select(e => e.GetString()!).ToList();
        Assert.Equal(3, replicas.Count);

        // The coordinator's GET goes to the first replica: the one that kept the new object in its page cache.
        using (var get = await c.NoRedirect.GetAsync($"{c.Url}/direct/obj"))
        {
            Assert.Equal(HttpStatusCode.Redirect, get.StatusCode);
            var first = c.Volumes.Single(v => v!.NodeId == replicas[0])!;
            Assert.Contains($":{new Uri(first.ReadUrl ?? first.Url).Port}/", get.Headers.Location!.ToString(), StringComparison.Ordinal);
        }
        foreach (var v in c.Volumes.Select(v => v!))
        {
            var written = (Cached: v.Metrics.UploadWrites.WithLabels("cached").Value, Direct: v.Metrics.UploadWrites.WithLabels("direct").Value, Refused: v.Metrics.UploadWrites.WithLabels("directrefused").Value);
            if (v.NodeId == replicas[0])
            {
                Assert.Equal((1.0, 0.0, 0.0), written);
            }
            else
            {
                Assert.Equal(DirectSupported(v.Store.Root) ? (0.0, 1.0, 0.0) : (0.0, 0.0, 1.0), written);
            }
            // Each copy reads back whole from its own volume (the direct ones from disk, not from a cache the write filled).
            Assert.Equal(data, await c.Client.GetByteArrayAsync($"{v.Url}/direct/obj"));
        }

        // The header takes 0 or 1 only, refused before the upload is prepared.
        using var bad = new HttpRequestMessage(HttpMethod.Put, $"{c.Volumes[0]!.Url}/internal/upload?upload_id=0123456789abcdef0123456789abcdef&key=direct%2Fbad") { Content = new ByteArrayContent(data[..10]) };
        bad.Headers.TryAddWithoutValidation(NodeHttp.CacheHeader, "maybe");
        using var refused = await c.Client.SendAsync(bad);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains(NodeHttp.CacheHeader, await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using var status = await c.Client.GetAsync($"{c.Volumes[0]!.Url}/internal/upload?upload_id=0123456789abcdef0123456789abcdef");
        Assert.Contains("unknown", await status.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
