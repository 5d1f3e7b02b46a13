using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using NanoKv.Core;
using NanoKv.Metadata;
using NanoKv.Tests.Infrastructure;
using NanoKv.Tests.Metadata;

namespace NanoKv.Tests;

/// <summary>PUT/GET/DELETE through a real coordinator and real volumes.</summary>
public class DataPathTests(PostgresFixture pg) : IClassFixture<PostgresFixture>
{
    /// <summary>The data-path tests that run on both metadata backends (a Theory parameter).</summary>
    public static TheoryData<MetaBackendKind> Backends => MetaLocation.All;

    private static byte[] Payload(int size) => RandomNumberGenerator.GetBytes(size);

    private static string Etag(byte[] data) => Blake3.Hasher.Hash(data).ToString();

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task PutGetDeleteHappyPath(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.MetaAsync(kind));
        var data = Payload(3 * 1024 * 1024 + 17);
        using var put = await c.Client.PutAsync($"{c.Url}/my%2Ffile.bin", new ByteArrayContent(data));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        Assert.Equal($"\"{Etag(data)}\"", put.Headers.ETag?.Tag);

        using var get = await c.NoRedirect.GetAsync($"{c.Url}/my%2Ffile.bin");
        Assert.Equal(HttpStatusCode.Redirect, get.StatusCode);
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/my%2Ffile.bin"));

        using var followed = await c.Client.GetAsync($"{c.Url}/my%2Ffile.bin");
        Assert.Equal($"\"{Etag(data)}\"", followed.Headers.ETag?.Tag); // the volume serves the same ETag

        using var head = await c.Client.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"{c.Url}/my%2Ffile.bin"));
        Assert.Equal(data.Length, head.Content.Headers.ContentLength);

        using var del = await c.Client.DeleteAsync($"{c.Url}/my%2Ffile.bin");
        Assert.Equal(HttpStatusCode.NoContent, del.StatusCode);
        using var gone = await c.Client.GetAsync($"{c.Url}/my%2Ffile.bin");
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        await AssertJsonError(gone, "not_found");
    }

    [Fact]
    public async Task ProxyGetStreamsAndPassesRanges()
    {
        await using var c = await TestCluster.StartAsync();
        var data = Payload(1_000_000);
        (await c.Client.PutAsync($"{c.Url}/k", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        using var full = await c.NoRedirect.GetAsync($"{c.Url}/k?proxy=1");
        Assert.Equal(HttpStatusCode.OK, full.StatusCode);
        Assert.Equal(data, await full.Content.ReadAsByteArrayAsync());

        using var req = new HttpRequestMessage(HttpMethod.Get, $"{c.Url}/k?proxy=1");
        req.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(100, 199);
        using var part = await c.NoRedirect.SendAsync(req);
        Assert.Equal(HttpStatusCode.PartialContent, part.StatusCode);
        Assert.Equal(data[100..200], await part.Content.ReadAsByteArrayAsync());
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task ThreeWayReplicationPutsIdenticalBytesOnTheHrwNodes(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(volumes: 5, replicas: 3, meta: await pg.MetaAsync(kind));
        var key = "replicated/object"u8.ToArray();
        var data = Payload(2_000_000);
        (await c.Client.PutAsync($"{c.Url}/{KeyCodec.Encode(key)}", new ByteArrayContent(data))).EnsureSuccessStatusCode();

        var expected = Placement.Choose(key, c.Volumes.Select(v => v!.NodeId), 3);
        var meta = c.Coordinator.Store.Get(key)!;
        Assert.Equal(ObjectState.Committed, meta.State);
        Assert.Equal(expected.Order(), meta.Replicas.Order());
        foreach (var v in c.Volumes)
        {
            var path = v!.Store.BlobPath(key);
            if (expected.Contains(v.NodeId))
            {
                Assert.Equal(data, await File.ReadAllBytesAsync(path));
            }
            else
            {
                Assert.False(File.Exists(path), $"{v.NodeId} must not hold a replica");
            }
            Assert.Empty(Directory.GetFiles(v.Store.TmpDir, "*.data"));
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task KeysAreWriteOnceUntilDeleted(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.MetaAsync(kind));
        (await c.Client.PutAsync($"{c.Url}/once", new ByteArrayContent(Payload(1000)))).EnsureSuccessStatusCode();
        using var again = await c.Client.PutAsync($"{c.Url}/once", new ByteArrayContent(Payload(1000)));
        Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);
        await AssertJsonError(again, "key_exists");

        (await c.Client.DeleteAsync($"{c.Url}/once")).EnsureSuccessStatusCode();
        var second = Payload(2000);
        using var rewrite = await c.Client.PutAsync($"{c.Url}/once", new ByteArrayContent(second));
        Assert.Equal(HttpStatusCode.Created, rewrite.StatusCode);
        Assert.Equal(second, await c.Client.GetByteArrayAsync($"{c.Url}/once"));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task DeleteIsIdempotentAndReachesEveryReplica(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.MetaAsync(kind));
        var key = "to-delete"u8.ToArray();
        (await c.Client.PutAsync($"{c.Url}/to-delete", new ByteArrayContent(Payload(5000)))).EnsureSuccessStatusCode();
        Assert.All(c.Volumes, v => Assert.True(File.Exists(v!.Store.BlobPath(key))));

        for (var i = 0; i < 2; i++)
        {
            using var del = await c.Client.DeleteAsync($"{c.Url}/to-delete");
            Assert.Equal(HttpStatusCode.NoContent, del.StatusCode);
        }
        using var never = await c.Client.DeleteAsync($"{c.Url}/never-existed");
        Assert.Equal(HttpStatusCode.NoContent, never.StatusCode);

        Assert.All(c.Volumes, v => Assert.False(File.Exists(v!.Store.BlobPath(key))));
        Assert.Equal(ObjectState.Tombstoned, c.Coordinator.Store.Get(key)!.State);
        foreach (var v in c.Volumes)
        {
            var info = await v!.Store.InfoAsync(key, false, CancellationToken.None);
            Assert.NotNull(info.TombstoneVersion); // durable where a rebuild can see it
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task DeleteWithAReplicaDownIsQuickAndLeavesTombstonesOnTheOthers(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.MetaAsync(kind));
        var key = "half-deleted"u8.ToArray();
        (await c.Client.PutAsync($"{c.Url}/half-deleted", new ByteArrayContent(Payload(1000)))).EnsureSuccessStatusCode();
        await c.StopVolumeAsync(2, waitDown: true);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var del = await c.Client.DeleteAsync($"{c.Url}/half-deleted");
        Assert.Equal(HttpStatusCode.NoContent, del.StatusCode);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2), $"DELETE took {sw.Elapsed}");
        var tombVersion = c.Coordinator.Store.Get(key)!.Version;
        for (var i = 0; i < 2; i++)
        {
            var info = await c.Volume(i).Store.InfoAsync(key, false, CancellationToken.None);
            Assert.False(info.Exists);
            Assert.Equal(tombVersion, info.TombstoneVersion);
        }
        // What happens when volume 2 returns (the delete arrives, within a bound): Faults/OwedDeleteTests.
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task GetIsServedByAnotherReplicaWhenOneIsDown(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.MetaAsync(kind));
        var key = "survivor"u8.ToArray();
        var data = Payload(100_000);
        (await c.Client.PutAsync($"{c.Url}/survivor", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        var first = c.Coordinator.Store.Get(key)!.Replicas[0];
        await c.StopVolumeAsync(c.IndexOf(first), waitDown: true);

        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/survivor"));
        using var proxied = await c.NoRedirect.GetAsync($"{c.Url}/survivor?proxy=1");
        Assert.Equal(data, await proxied.Content.ReadAsByteArrayAsync());
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task PutSucceedsWhenAChosenNodeIsDown(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(volumes: 4, replicas: 3, meta: await pg.MetaAsync(kind));
        var key = "placed-around"u8.ToArray();
        var preferred = Placement.Choose(key, c.Volumes.Select(v => v!.NodeId), 3);
        await c.StopVolumeAsync(c.IndexOf(preferred[0]), waitDown: true);

        using var put = await c.Client.PutAsync($"{c.Url}/placed-around", new ByteArrayContent(Payload(10_000)));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        var meta = c.Coordinator.Store.Get(key)!;
        Assert.DoesNotContain(preferred[0], meta.Replicas);
        Assert.Equal(3, meta.Replicas.Distinct().Count());
    }

    [Fact]
    public async Task PutFallsBackToTheNextNodeWhenAnAliveNodeRefusesConnections()
    {
        // Stopped but not yet marked down: prepare fails fast and the next HRW node takes its place.
        await using var c = await TestCluster.StartAsync(volumes: 4, replicas: 3, configure: o => o with { Health = TestCluster.FastHealth with { DownAfter = TimeSpan.FromMinutes(1), DownAfterFailures = 1000, SuspectAfter = TimeSpan.FromMinutes(1) } });
        var key = "fallback"u8.ToArray();
        var preferred = Placement.Choose(key, c.Volumes.Select(v => v!.NodeId), 3);
        await c.StopVolumeAsync(c.IndexOf(preferred[1]));
        using var put = await c.Client.PutAsync($"{c.Url}/fallback", new ByteArrayContent(Payload(10_000)));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        Assert.DoesNotContain(preferred[1], c.Coordinator.Store.Get(key)!.Replicas);
    }

    [Theory]
    [InlineData(1000, 507)] // sent chunked: HttpClient would otherwise send a body this small despite the refusal
    [InlineData(3 * 1024 * 1024, 507)]
    [InlineData(3 * 1024 * 1024, 400)]
    public async Task AReplicaThatRefusesBeforeTheBodyIsReplacedByTheNextNode(int size, int status)
    {
        // Prepare happens on the upload's arrival; a node that refuses it (full, failing) took no byte of the
        // body, so the same body still goes whole to the next node in HRW order.
        await using var c = await TestCluster.StartAsync(volumes: 4, replicas: 3);
        var key = Encoding.UTF8.GetBytes($"refused-{size}-{status}");
        var preferred = Placement.Choose(key, c.Volumes.Select(v => v!.NodeId), 3);
        var refusing = c.IndexOf(preferred[1]);
        await Arm(c, refusing, new { op = "prepare", mode = "fail", count = 1000, status });
        var data = Payload(size);
        using var put = await c.Client.PutAsync($"{c.Url}/{Encoding.UTF8.GetString(key)}", new ByteArrayContent(data));
        Assert.True(put.StatusCode == HttpStatusCode.Created, await put.Content.ReadAsStringAsync());
        var report = await c.Client.GetFromJsonAsync<JsonElement>($"{c.Volume(refusing).Url}/admin/faults");
        Assert.True(report.GetProperty("hits").GetProperty("prepare").GetInt32() >= 1, report.ToString());
        var meta = c.Coordinator.Store.Get(key)!;
        Assert.DoesNotContain(preferred[1], meta.Replicas);
        Assert.Equal(3, meta.Replicas.Distinct().Count());
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/{Encoding.UTF8.GetString(key)}"));
        foreach (var id in meta.Replicas)
        {
            Assert.Equal(data, await File.ReadAllBytesAsync(c.VolumeById(id).Store.BlobPath(key)));
        }
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(c.Volume(refusing).Store.Root, "tmp")));
    }

    [Fact]
    public async Task TooFewAliveNodesIsA503()
    {
        await using var c = await TestCluster.StartAsync(volumes: 2, replicas: 3);
        using var put = await c.Client.PutAsync($"{c.Url}/x", new ByteArrayContent(Payload(10)));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, put.StatusCode);
        await AssertJsonError(put, "insufficient_nodes");
        Assert.Null(c.Coordinator.Store.Get("x"u8));
    }

    [Theory]
    [InlineData(MetaBackendKind.RocksDb, "prepare")]
    [InlineData(MetaBackendKind.RocksDb, "commit")]
    [InlineData(MetaBackendKind.Postgres, "prepare")]
    [InlineData(MetaBackendKind.Postgres, "commit")]
    public async Task TransientFailuresAreRetried(MetaBackendKind kind, string op)
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.MetaAsync(kind));
        await Arm(c, 0, new { op, mode = "fail", count = 2, status = 503 });
        var data = Payload(50_000);
        using var put = await c.Client.PutAsync($"{c.Url}/retried-{op}", new ByteArrayContent(data));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/retried-{op}"));
    }

    [Theory]
    [InlineData(MetaBackendKind.RocksDb, "upload", 503)]
    [InlineData(MetaBackendKind.RocksDb, "commit", 503)]
    [InlineData(MetaBackendKind.RocksDb, "upload", 400)]
    [InlineData(MetaBackendKind.Postgres, "upload", 503)]
    [InlineData(MetaBackendKind.Postgres, "commit", 503)]
    [InlineData(MetaBackendKind.Postgres, "upload", 400)]
    public async Task PermanentFailuresAbortAndLeaveNothing(MetaBackendKind kind, string op, int status)
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.MetaAsync(kind));
        await Arm(c, 1, new { op, mode = "fail", count = 1000, status });
        var key = Encoding.UTF8.GetBytes($"doomed-{op}");
        using var put = await c.Client.PutAsync($"{c.Url}/doomed-{op}", new ByteArrayContent(Payload(50_000)));
        Assert.False(put.IsSuccessStatusCode);
        await AssertJsonError(put, "replica_failed");
        await AssertNothingVisible(c, key);
    }

    [Fact]
    public async Task AStalledUploadFailsThePutAfterTheIdleTimeout()
    {
        await using var c = await TestCluster.StartAsync(configure: o => o with { DataPath = o.DataPath with { UploadIdleTimeout = TimeSpan.FromSeconds(1) } });
        await Arm(c, 1, new { op = "upload", mode = "stall", count = 1, stall_ms = 5_000 });
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var put = await c.Client.PutAsync($"{c.Url}/stalled", new ByteArrayContent(Payload(32 * 1024 * 1024)));
        Assert.True(put.StatusCode == HttpStatusCode.ServiceUnavailable, $"{sw.Elapsed} {await put.Content.ReadAsStringAsync()}");
        await AssertJsonError(put, "replica_failed");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), $"took {sw.Elapsed}");
        await AssertNothingVisible(c, "stalled"u8.ToArray());
    }

    [Fact]
    public async Task PermanentPrepareFailureWithNoSpareNodeAborts()
    {
        await using var c = await TestCluster.StartAsync();
        await Arm(c, 2, new { op = "prepare", mode = "fail", count = 1000, status = 500 });
        var key = "no-spare"u8.ToArray();
        using var put = await c.Client.PutAsync($"{c.Url}/no-spare", new ByteArrayContent(Payload(1000)));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, put.StatusCode);
        await AssertJsonError(put, "insufficient_nodes");
        await AssertNothingVisible(c, key);
    }

    [Fact]
    public async Task CorruptedReplicaDataAbortsWithChecksumMismatch()
    {
        await using var c = await TestCluster.StartAsync();
        await Arm(c, 0, new { op = "upload_corrupt", mode = "corrupt", count = 1 });
        var key = "bitflip"u8.ToArray();
        using var put = await c.Client.PutAsync($"{c.Url}/bitflip", new ByteArrayContent(Payload(300_000)));
        Assert.Equal(HttpStatusCode.BadGateway, put.StatusCode);
        await AssertJsonError(put, "checksum_mismatch");
        await AssertNothingVisible(c, key);
    }

    [Fact]
    public async Task PullVerifiesTheChecksumAndRejectsMismatches()
    {
        await using var c = await TestCluster.StartAsync();
        var key = "pulled"u8.ToArray();
        var data = Payload(200_000);
        (await c.Client.PutAsync($"{c.Url}/pulled", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        var source = c.Volume(0).Url;
        var dest = c.Volume(1);
        var volumes = new VolumeClient(c.Client, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2));

        Assert.True((await volumes.PrepareAsync(dest.Url, key, "pull1", data.Length, default)).Ok);
        var bad = await volumes.PullAsync(dest.Url, "pull1", source, new string('0', 64), default);
        Assert.Equal(422, bad.Status);
        Assert.Contains("checksum_mismatch", bad.Body);

        await Arm(c, 1, new { op = "pull_corrupt", mode = "corrupt", count = 1 });
        var corrupted = await volumes.PullAsync(dest.Url, "pull1", source, Etag(data), default);
        Assert.Equal(422, corrupted.Status);

        var good = await volumes.PullAsync(dest.Url, "pull1", source, Etag(data), default);
        Assert.True(good.Ok, good.Body);
        Assert.Equal(Etag(data), good.As<UploadResult>()!.Etag);
        Assert.True((await volumes.AbortAsync(dest.Url, "pull1", default)).Ok);
    }

    [Fact]
    public async Task TransientPullFailuresAreRetried()
    {
        await using var c = await TestCluster.StartAsync();
        var data = Payload(100_000);
        (await c.Client.PutAsync($"{c.Url}/pull-retry", new ByteArrayContent(data))).EnsureSuccessStatusCode();
        var dest = c.Volume(1).Url;
        var volumes = new VolumeClient(c.Client, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(2));
        Assert.True((await volumes.PrepareAsync(dest, "pull-retry"u8.ToArray(), "pr1", data.Length, default)).Ok);
        await Arm(c, 1, new { op = "pull", mode = "fail", count = 2, status = 503 });
        var r = await volumes.PullAsync(dest, "pr1", c.Volume(0).Url, Etag(data), default);
        Assert.True(r.Ok, r.Body);
        await Arm(c, 1, new { op = "pull", mode = "fail", count = 1000, status = 503 });
        Assert.True((await volumes.PrepareAsync(dest, "pull-retry"u8.ToArray(), "pr2", data.Length, default)).Ok);
        var gaveUp = await volumes.PullAsync(dest, "pr2", c.Volume(0).Url, Etag(data), default);
        Assert.Equal(503, gaveUp.Status); // the time box ends the retries
    }

    [Fact]
    public async Task ChunkedBodiesAreAccepted()
    {
        await using var c = await TestCluster.StartAsync();
        var data = Payload(700_000);
        var content = new StreamContent(new MemoryStream(data));
        using var req = new HttpRequestMessage(HttpMethod.Put, $"{c.Url}/chunked") { Content = content };
        req.Headers.TransferEncodingChunked = true;
        using var put = await c.Client.SendAsync(req);
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.Url}/chunked"));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task EmptyObjectsWork(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.MetaAsync(kind));
        using var put = await c.Client.PutAsync($"{c.Url}/empty", new ByteArrayContent([]));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        Assert.Empty(await c.Client.GetByteArrayAsync($"{c.Url}/empty"));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task ConcurrentPutsOfOneKeyHaveExactlyOneWinner(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.MetaAsync(kind));
        var tasks = Enumerable.Range(0, 8).Select(async _ =>
        {
            using var r = await c.Client.PutAsync($"{c.Url}/contended", new ByteArrayContent(Payload(200_000)));
            return r.StatusCode;
        });
        var codes = await Task.WhenAll(tasks);
        Assert.Equal(1, codes.Count(s => s == HttpStatusCode.Created));
        Assert.All(codes.Where(s => s != HttpStatusCode.Created), s => Assert.Equal(HttpStatusCode.Conflict, s));
    }

    [Fact]
    public async Task KeysThatLookLikeRoutesOrPathsStayTheirOwnKeys()
    {
        await using var c = await TestCluster.StartAsync();
        foreach (var raw in new[] { "a/../b", "admin/nodes", "internal/prepare", ".x", "dir/./x", "back\\slash" })
        {
            var key = Encoding.UTF8.GetBytes(raw);
            var data = Payload(1000);
            var url = $"{c.Url}/{KeyCodec.UrlPath(key)}";
            using var put = await c.Client.PutAsync(url, new ByteArrayContent(data));
            Assert.True(put.StatusCode == HttpStatusCode.Created, $"{raw}: {put.StatusCode} {await put.Content.ReadAsStringAsync()}");
            Assert.Equal(data, await c.Client.GetByteArrayAsync(url));
            foreach (var v in c.Volumes)
            {
                Assert.StartsWith(v!.Store.BlobsDir, Path.GetFullPath(v.Store.BlobPath(key)), StringComparison.Ordinal);
            }
        }
        // "%2E%2E" is the key "..", not a parent folder (System.Uri would unescape it, so written by hand).
        Assert.Contains(" 201 ", (await RawExchangeAsync(c.Url, "PUT /%2E%2E HTTP/1.1", "dots")).Status);
        Assert.Equal(4, c.Coordinator.Store.Get(".."u8)!.Size);
        Assert.All(c.Volumes, v => Assert.True(File.Exists(Path.Combine(v!.Store.BlobsDir, KeyCodec.BlobRelativePath(".."u8)))));

        // An unencoded ".." in the request target is part of the key, never a path step (HttpClient would
        // normalise it away, so this request is written by hand).
        var (status, _) = await RawExchangeAsync(c.Url, "PUT /x/../y HTTP/1.1", "abc");
        Assert.Contains(" 201 ", status);
        Assert.NotNull(c.Coordinator.Store.Get("x/../y"u8));
        Assert.Null(c.Coordinator.Store.Get("y"u8));
    }

    [Fact]
    public async Task LongKeysWorkUpToTheLimit()
    {
        await using var c = await TestCluster.StartAsync();
        var key = Enumerable.Range(0, KeyCodec.MaxKeyBytes).Select(i => (byte)((i + 1) % 251 + 1)).ToArray(); // a leading 0x01 is reserved
        var data = Payload(5000);
        var url = $"{c.Url}/{KeyCodec.UrlPath(key)}";
        (await c.Client.PutAsync(url, new ByteArrayContent(data))).EnsureSuccessStatusCode();
        Assert.Equal(data, await c.Client.GetByteArrayAsync(url));
        var v = c.Volume(0);
        var path = v.Store.BlobPath(key);
        Assert.True(KeyCodec.IsHashedName(Path.GetFileName(path)));
        Assert.Equal(key, await File.ReadAllBytesAsync(path + ".key"));
        var listed = v.Store.List(100, null, null, false).Keys;
        Assert.Contains(listed, e => e.Key == KeyCodec.Encode(key));
    }

    [Theory]
    [InlineData("/", "invalid_key")]
    [InlineData("/bad%zzkey", "invalid_key")]
    [InlineData("/trailing%4", "invalid_key")]
    public async Task BadKeysAre400WithJson(string path, string code)
    {
        await using var c = await TestCluster.StartAsync();
        foreach (var method in new[] { "PUT", "GET", "DELETE" })
        {
            // Written by hand: HttpClient would re-escape the malformed percent signs.
            var (status, body) = await RawExchangeAsync(c.Url, $"{method} {path} HTTP/1.1", method == "PUT" ? "x" : "");
            Assert.True(status.Contains(" 400 ", StringComparison.Ordinal), $"{method} {path}: {status}");
            Assert.Contains($"\"error\":\"{code}\"", body);
        }
    }

    [Fact]
    public async Task ReservedKeysAreRejected()
    {
        await using var c = await TestCluster.StartAsync();
        var (status, body) = await RawExchangeAsync(c.Url, "PUT /%68ealthz HTTP/1.1", "x");
        Assert.Contains(" 400 ", status);
        Assert.Contains("reserved", body);
    }

    [Fact]
    public async Task TooLongKeyIs400()
    {
        await using var c = await TestCluster.StartAsync();
        using var resp = await c.Client.PutAsync($"{c.Url}/{new string('k', KeyCodec.MaxKeyBytes + 1)}", new ByteArrayContent([1]));
        Assert.Equal(HttpStatusCode.BadRequest, resp.StatusCode);
        await AssertJsonError(resp, "invalid_key");
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task BodyShorterThanContentLengthIsRejectedAndLeavesNothing(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.MetaAsync(kind));
        var uri = new Uri(c.Url);
        using (var tcp = new System.Net.Sockets.TcpClient())
        {
            await tcp.ConnectAsync(uri.Host, uri.Port);
            var head = $"PUT /short HTTP/1.1\r\nHost: {uri.Authority}\r\nContent-Length: 100000\r\n\r\n";
            await tcp.GetStream().WriteAsync(Encoding.ASCII.GetBytes(head + new string('a', 1000)));
            // Hang up only once the write is under way (pending metadata exists), 99,000 bytes short.
            await TestCluster.WaitUntilAsync(() => c.Coordinator.Store.Get("short"u8)?.State == ObjectState.Pending, TimeSpan.FromSeconds(10), "pending write");
        }
        await TestCluster.WaitUntilAsync(() => c.Coordinator.Store.Get("short"u8) is null, TimeSpan.FromSeconds(10), "abort of the short upload");
        await AssertNothingVisible(c, "short"u8.ToArray());
    }

    [Fact]
    public async Task BodyShorterThanContentLengthIsAnswered400()
    {
        await using var c = await TestCluster.StartAsync();
        // Half-close after a short body: Kestrel may drop the connection without answering; if it answers, it is a 400.
        var status = await RawRequestAsync(c.Url, "PUT /short2 HTTP/1.1", new string('a', 1000), contentLength: 100_000);
        Assert.True(status.Length == 0 || status.Contains(" 400 ", StringComparison.Ordinal), status);
    }

    [Fact]
    public async Task UnknownRoutesAndMethodsAnswerJson()
    {
        await using var c = await TestCluster.StartAsync();
        using var r = await c.Client.PostAsync($"{c.Url}/some-key", new ByteArrayContent([1]));
        Assert.False(r.IsSuccessStatusCode);
        Assert.Equal("application/json", r.Content.Headers.ContentType?.MediaType);
    }

    /// <summary>Sends a hand-written request with Connection: close and returns the status line and body.</summary>
    internal static async Task<(string Status, string Body)> RawExchangeAsync(string baseUrl, string requestLine, string body)
    {
        var uri = new Uri(baseUrl);
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(uri.Host, uri.Port);
        var stream = tcp.GetStream();
        var head = $"{requestLine}\r\nHost: {uri.Authority}\r\nConnection: close\r\nContent-Length: {body.Length}\r\n\r\n{body}";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
        using var reader = new StreamReader(stream);
        var all = await reader.ReadToEndAsync();
        var firstLine = all.Split("\r\n")[0];
        var split = all.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        return (firstLine, split < 0 ? "" : all[(split + 4)..]);
    }

    /// <summary>Sends a hand-written request (then half-closes) and returns the status line.</summary>
    internal static async Task<string> RawRequestAsync(string baseUrl, string requestLine, string body, long? contentLength = null)
    {
        var uri = new Uri(baseUrl);
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(uri.Host, uri.Port);
        var stream = tcp.GetStream();
        var head = $"{requestLine}\r\nHost: {uri.Authority}\r\nContent-Length: {contentLength ?? body.Length}\r\n\r\n{body}";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
        tcp.Client.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        using var reader = new StreamReader(stream);
        try
        {
            return await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)) ?? "";
        }
        catch (IOException ex) when (ex.InnerException is System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.ConnectionReset })
        {
            return ""; // the server dropped the connection without answering (a reset rather than a close)
        }
    }

    internal static async Task Arm(TestCluster c, int volume, object rule)
    {
        using var resp = await c.Client.PostAsJsonAsync($"{c.Volume(volume).Url}/admin/faults", rule);
        resp.EnsureSuccessStatusCode();
    }

    internal static async Task AssertJsonError(HttpResponseMessage resp, string code)
    {
        var body = await resp.Content.ReadAsStringAsync();
        using var doc = JsonDocument.Parse(body);
        Assert.True(code == doc.RootElement.GetProperty("error").GetString(), body);
        Assert.False(string.IsNullOrEmpty(doc.RootElement.GetProperty("detail").GetString()));
    }

    /// <summary>No metadata, no GET, no blob and no temp data on any volume.</summary>
    internal static async Task AssertNothingVisible(TestCluster c, byte[] key)
    {
        var meta = c.Coordinator.Store.Get(key);
        Assert.True(meta is null || meta.State == ObjectState.Tombstoned, $"metadata left: {meta}");
        using var get = await c.Client.GetAsync($"{c.Url}/{KeyCodec.UrlPath(key)}");
        Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        foreach (var v in c.Volumes.Where(v => v is not null))
        {
            Assert.False(File.Exists(v!.Store.BlobPath(key)), $"blob left on {v.NodeId}");
            Assert.Empty(Directory.GetFiles(v.Store.TmpDir, "*.data"));
            Assert.Empty(Directory.GetFiles(v.Store.TmpDir, "*.json"));
        }
    }
}
