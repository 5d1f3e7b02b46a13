using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;
using NanoKv.Volume;

namespace NanoKv.Tests;

/// <summary>One real volume server over HTTP: the internal write protocol and the admin API.</summary>
public sealed class VolumeApiTests : IAsyncLifetime
{
    private readonly string _dir = TempDir.Create("volume");
    private readonly HttpClient _http = new();
    private VolumeServer _volume = null!;
    private VolumeClient _client = null!;

    private string Url => _volume.Url;

    public async Task InitializeAsync()
    {
        _volume = VolumeServer.Create(new VolumeOptions { DataDir = _dir, Port = 0, LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning });
        await _volume.StartAsync();
        _client = new VolumeClient(_http, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2));
    }

    public async Task DisposeAsync()
    {
        await _volume.DisposeAsync();
        _http.Dispose();
        TempDir.Delete(_dir);
    }

    private async Task<byte[]> WriteAsync(string name, int size, long version = 1_000_000)
    {
        var key = System.Text.Encoding.UTF8.GetBytes(name);
        var data = RandomNumberGenerator.GetBytes(size);
        var id = Guid.NewGuid().ToString("N");
        Assert.True((await _client.PrepareAsync(Url, key, id, size, default)).Ok);
        Assert.True((await _client.UploadAsync(Url, id, new ByteArrayContent(data), default)).Ok);
        Assert.True((await _client.CommitAsync(Url, key, id, version, default)).Ok);
        return data;
    }

    [Fact]
    public async Task ProtocolCallsAreIdempotent()
    {
        var key = "idem"u8.ToArray();
        var data = RandomNumberGenerator.GetBytes(10_000);
        for (var i = 0; i < 2; i++)
        {
            Assert.True((await _client.PrepareAsync(Url, key, "up1", data.Length, default)).Ok);
        }
        for (var i = 0; i < 2; i++)
        {
            var r = await _client.UploadAsync(Url, "up1", new ByteArrayContent(data), default);
            Assert.True(r.Ok, r.Body);
            Assert.Equal(Blake3.Hasher.Hash(data).ToString(), r.As<UploadResult>()!.Etag);
        }
        for (var i = 0; i < 2; i++)
        {
            Assert.True((await _client.CommitAsync(Url, key, "up1", 42_000_000, default)).Ok);
        }
        Assert.Equal(data, await _http.GetByteArrayAsync($"{Url}/idem"));
        Assert.Equal("committed", (await _client.UploadStatusAsync(Url, "up1", default)).As<UploadStatus>()!.State);
        Assert.Equal(409, (await _client.AbortAsync(Url, "up1", default)).Status); // committed: delete instead

        for (var i = 0; i < 2; i++)
        {
            Assert.True((await _client.DeleteAsync(Url, key, 43_000_000, default)).Ok);
        }
        using var gone = await _http.GetAsync($"{Url}/idem");
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
    }

    [Fact]
    public async Task PrepareRefusesReusingAnUploadIdForAnotherKey()
    {
        Assert.True((await _client.PrepareAsync(Url, "a"u8.ToArray(), "same", 1, default)).Ok);
        var r = await _client.PrepareAsync(Url, "b"u8.ToArray(), "same", 1, default);
        Assert.Equal(409, r.Status);
        Assert.Contains("upload_conflict", r.Body);
    }

    [Fact]
    public async Task CommitAndAbortOfUnknownUploads()
    {
        var commit = await _client.CommitAsync(Url, "k"u8.ToArray(), "nope", 1, default);
        Assert.Equal(404, commit.Status);
        Assert.Contains("unknown_upload", commit.Body);
        Assert.True((await _client.AbortAsync(Url, "nope", default)).Ok); // idempotent: nothing to abort
        var early = await _client.PrepareAsync(Url, "k"u8.ToArray(), "nodata", 5, default);
        Assert.True(early.Ok);
        var premature = await _client.CommitAsync(Url, "k"u8.ToArray(), "nodata", 1, default);
        Assert.Equal(409, premature.Status);
        Assert.Contains("upload_incomplete", premature.Body);
    }

    [Fact]
    public async Task ACommitForgottenByARestartIsStillRecognisedByItsBlob()
    {
        // The in-memory record of committed upload ids is gone after a restart (a second BlobStore on the same
        // folder); the blob stamped with the write's version is the durable evidence.
        var key = "renamed"u8.ToArray();
        Assert.True(_volume.Store.StateInXattr, "this filesystem keeps upload state in an xattr");
        Assert.True((await _client.PrepareAsync(Url, key, "up-r", 100, default)).Ok);
        Assert.True((await _client.UploadAsync(Url, "up-r", new ByteArrayContent(RandomNumberGenerator.GetBytes(100)), default)).Ok);
        Assert.True((await _client.CommitAsync(Url, key, "up-r", 1_000_000, default)).Ok);
        Assert.Empty(Directory.GetFiles(_volume.Store.TmpDir));

        var restarted = new BlobStore(_volume.Store.Root);
        // Abort must not claim the write is undone (a rollback would then leave the blob behind).
        var refused = await Assert.ThrowsAsync<VolumeException>(() => restarted.AbortAsync("up-r", key, 1_000_000));
        Assert.Equal(409, refused.Status);
        restarted.Commit("up-r", key, 1_000_000); // a retried commit is done already
        Assert.Equal("unknown", restarted.Status("up-r").State); // recovery then checks the blob by key and version
        await restarted.AbortAsync("up-r", key, 999); // another write's version: nothing of it here
        Assert.True(File.Exists(_volume.Store.BlobPath(key)));
    }

    [Fact]
    public async Task ACommitWaitsForTheFolderAnotherCommitIsStillMaking()
    {
        // A folder that exists is not yet durable while its maker's parent fsync runs; a second commit into it
        // must not be answered before that fsync returned (its blob would be lost with the folder's entry).
        var root = TempDir.Create("folders");
        try
        {
            var store = new BlobStore(root);
            var first = "folder-0"u8.ToArray();
            var folder = Path.GetDirectoryName(store.BlobPath(first))!;
            byte[]? second = null;
            for (var i = 1; second is null; i++)
            {
                var candidate = System.Text.Encoding.UTF8.GetBytes($"folder-{i}");
                second = Path.GetDirectoryName(store.BlobPath(candidate)) == folder ? candidate : null;
            }
            foreach (var (key, id) in new[] { (first, "a"), (second, "b") })
            {
                store.Prepare(key, id, 10);
                await store.ReceiveAsync(id, new MemoryStream(new byte[10]), null, default);
            }
            using var entered = new SemaphoreSlim(0);
            using var release = new ManualResetEventSlim();
            store.FolderSyncHook = parent =>
            {
                if (parent == Path.GetDirectoryName(folder))
                {
                    entered.Release();
                    release.Wait(TimeSpan.FromSeconds(30));
                }
            };
            var making = Task.Run(() => store.Commit("a", first, 1_000_000));
            Assert.True(await entered.WaitAsync(TimeSpan.FromSeconds(10)), "the first commit never reached its folder's parent fsync");
            Assert.True(Directory.Exists(folder));
            var waiting = Task.Run(() => store.Commit("b", second, 2_000_000));
            Assert.NotSame(waiting, await Task.WhenAny(waiting, Task.Delay(TimeSpan.FromMilliseconds(500))));
            Assert.False(waiting.IsCompleted, "a commit into a folder whose entry was not fsync'd yet was answered");
            release.Set();
            await Task.WhenAll(making, waiting).WaitAsync(TimeSpan.FromSeconds(10));
            Assert.True(File.Exists(store.BlobPath(first)));
            Assert.True(File.Exists(store.BlobPath(second)));
        }
        finally
        {
            TempDir.Delete(root);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task BothUploadStateLayoutsKeepTheProtocol(bool inXattr)
    {
        var root = Path.Combine(Path.GetTempPath(), "nanokv-tests", "layout-" + Guid.NewGuid().ToString("N"));
        try
        {
            var store = new BlobStore(root, inXattr);
            var key = "layout"u8.ToArray();
            var data = RandomNumberGenerator.GetBytes(5000);
            store.Prepare(key, "u1", data.Length);
            Assert.Equal("prepared", store.Status("u1").State);
            Assert.Equal(inXattr ? 1 : 2, Directory.GetFiles(store.TmpDir).Length); // the data file (+ JSON state)
            Assert.Equal(("u1", "prepared"), BlobStore.UploadStates(store.TmpDir).Single());
            var got = await store.ReceiveAsync("u1", new MemoryStream(data), null, default);
            Assert.Equal(data.Length, got.Size);
            Assert.Equal("uploaded", store.Status("u1").State);
            Assert.Throws<VolumeException>(() => store.Prepare("other"u8.ToArray(), "u1", 1));
            store.Commit("u1", key, 5_000_000);
            store.Commit("u1", key, 5_000_000);
            Assert.Equal("committed", store.Status("u1").State);
            Assert.Equal(data, await File.ReadAllBytesAsync(store.BlobPath(key)));
            Assert.Equal(got.Etag, BlobStore.StoredEtag(store.BlobPath(key)));
            Assert.Equal(409, (await Assert.ThrowsAsync<VolumeException>(() => store.AbortAsync("u1"))).Status);
            Assert.Null(Xattr.TryGet(store.BlobPath(key), "user.nanokv.upload"));

            store.Prepare("k2"u8.ToArray(), "u2", null);
            await store.AbortAsync("u2");
            Assert.Equal("unknown", store.Status("u2").State);
            Assert.DoesNotContain(Directory.GetFiles(store.TmpDir), f => !f.EndsWith(".committed", StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Theory]
    [InlineData("expected_size=-1")]
    [InlineData("expected_size=99999999999999")]
    [InlineData("expected_size=abc")]
    [InlineData("upload_id=../../etc")]
    public async Task BadPrepareArgumentsAre400(string bad)
    {
        var query = bad.StartsWith("upload_id", StringComparison.Ordinal) ? $"key=k&{bad}" : $"key=k&upload_id=u&{bad}";
        using var r = await _http.PostAsync($"{Url}/internal/prepare?{query}", null);
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        Assert.Equal("application/json", r.Content.Headers.ContentType?.MediaType);
        Assert.Empty(Directory.GetFiles(_volume.Store.TmpDir));
    }

    [Fact]
    public async Task UploadLongerOrShorterThanExpectedIsRejected()
    {
        Assert.True((await _client.PrepareAsync(Url, "s"u8.ToArray(), "sz", 10, default)).Ok);
        var longer = await _client.UploadAsync(Url, "sz", new ByteArrayContent(new byte[11]), default);
        Assert.Equal(400, longer.Status);
        Assert.Contains("size_mismatch", longer.Body);
        var shorter = await _client.UploadAsync(Url, "sz", new ByteArrayContent(new byte[9]), default);
        Assert.Equal(400, shorter.Status);
        Assert.True((await _client.UploadAsync(Url, "sz", new ByteArrayContent(new byte[10]), default)).Ok);
    }

    [Fact]
    public async Task GetSupportsRangesHeadAndEtag()
    {
        var data = await WriteAsync("ranged", 50_000);
        using var req = new HttpRequestMessage(HttpMethod.Get, $"{Url}/ranged");
        req.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(1000, 1999);
        using var part = await _http.SendAsync(req);
        Assert.Equal(HttpStatusCode.PartialContent, part.StatusCode);
        Assert.Equal(data[1000..2000], await part.Content.ReadAsByteArrayAsync());

        using var head = await _http.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"{Url}/ranged"));
        Assert.Equal(HttpStatusCode.OK, head.StatusCode);
        Assert.Equal(50_000, head.Content.Headers.ContentLength);
        Assert.Equal($"\"{Blake3.Hasher.Hash(data)}\"", head.Headers.ETag?.Tag);
    }

    [Fact]
    public async Task AdminBlobReportsSizeVersionAndDeepEtag()
    {
        var data = await WriteAsync("probe", 20_000, version: 7_000_000);
        var shallow = await _http.GetFromJsonAsync<BlobInfo>($"{Url}/admin/blob?key=probe");
        Assert.True(shallow!.Exists);
        Assert.Equal(20_000, shallow.Size);
        Assert.Equal(7_000_000, shallow.Version);
        Assert.Null(shallow.Etag);
        var deep = await _http.GetFromJsonAsync<BlobInfo>($"{Url}/admin/blob?key=probe&deep=true");
        Assert.Equal(Blake3.Hasher.Hash(data).ToString(), deep!.Etag);
        var missing = await _http.GetFromJsonAsync<BlobInfo>($"{Url}/admin/blob?key=absent");
        Assert.False(missing!.Exists);
    }

    [Fact]
    public async Task DeleteLeavesATombstoneAndIgnoresOlderVersions()
    {
        await WriteAsync("versioned", 100, version: 5_000_000);
        Assert.True((await _client.DeleteAsync(Url, "versioned"u8.ToArray(), 4_000_000, default)).Ok);
        Assert.True(File.Exists(_volume.Store.BlobPath("versioned"u8.ToArray())), "an older delete must not remove a newer blob");
        Assert.True((await _client.DeleteAsync(Url, "versioned"u8.ToArray(), 6_000_000, default)).Ok);
        var info = await _http.GetFromJsonAsync<BlobInfo>($"{Url}/admin/blob?key=versioned");
        Assert.False(info!.Exists);
        Assert.Equal(6_000_000, info.TombstoneVersion);
        var tombs = await _http.GetFromJsonAsync<ListPage>($"{Url}/admin/list?tombstones=true");
        Assert.Contains(tombs!.Keys, e => e.Key == "versioned" && e.Tombstone);
    }

    [Fact]
    public async Task ListPagesThroughEveryKeyWithACursorAndPrefix()
    {
        var names = Enumerable.Range(0, 25).Select(i => (i % 2 == 0 ? "even/" : "odd/") + i).ToList();
        foreach (var n in names)
        {
            await WriteAsync(n, 10);
        }
        var seen = new List<string>();
        string? after = null;
        var pages = 0;
        do
        {
            var page = await _http.GetFromJsonAsync<ListPage>($"{Url}/admin/list?limit=7" + (after is null ? "" : $"&after={Uri.EscapeDataString(after)}"));
            seen.AddRange(page!.Keys.Select(k => Uri.UnescapeDataString(k.Key)));
            after = page.NextAfter;
            pages++;
        }
        while (after is not null);
        Assert.Equal(names.Order(), seen.Order());
        Assert.True(pages >= 4);
        var evens = await _http.GetFromJsonAsync<ListPage>($"{Url}/admin/list?prefix=even%2F&limit=100");
        Assert.Equal(13, evens!.Keys.Count);
    }

    [Fact]
    public async Task SweepTmpRemovesOnlyStaleTempFiles()
    {
        Assert.True((await _client.PrepareAsync(Url, "t"u8.ToArray(), "stale", 1, default)).Ok);
        foreach (var f in Directory.GetFiles(_volume.Store.TmpDir))
        {
            File.SetLastWriteTimeUtc(f, DateTime.UtcNow.AddHours(-2));
        }
        Assert.True((await _client.PrepareAsync(Url, "t2"u8.ToArray(), "fresh", 1, default)).Ok);
        using var r = await _http.PostAsync($"{Url}/admin/sweep_tmp?safe_age_secs=3600", null);
        r.EnsureSuccessStatusCode();
        var files = Directory.GetFiles(_volume.Store.TmpDir).Select(Path.GetFileName).ToList();
        Assert.DoesNotContain(files, f => f!.StartsWith("stale", StringComparison.Ordinal));
        Assert.Contains(files, f => f!.StartsWith("fresh", StringComparison.Ordinal));
    }

    [Fact]
    public async Task HealthzNamesTheNodeAndIdPersists()
    {
        var h = await _http.GetFromJsonAsync<VolumeHealth>($"{Url}/healthz");
        Assert.Equal(_volume.NodeId, h!.NodeId);
        Assert.StartsWith("vol-", h.NodeId, StringComparison.Ordinal);
        Assert.Equal(h.NodeId, (await File.ReadAllTextAsync(Path.Combine(_dir, "node_id"))).Trim());
    }

    [Fact]
    public async Task FaultInjectionIsOffByDefault()
    {
        using var r = await _http.PostAsJsonAsync($"{Url}/admin/faults", new { op = "prepare", mode = "fail" });
        Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
    }
}
