using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using NanoKv.Coordinator;
using NanoKv.Core;
using NanoKv.Metadata;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Metadata;

/// <summary>
/// Leases of pending writes on shared metadata: coordinator A is killed (-9) mid-PUT and coordinator B, still
/// running, resolves A's pending write once A's lease lapses — not at A's next start (A never restarts).
/// </summary>
public sealed class PendingLeaseTests(PostgresFixture pg) : IClassFixture<PostgresFixture>
{
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(3);

    /// <summary>Lease lapse + one sweep interval + the resolution's volume calls + scheduling slack.</summary>
    private static TimeSpan ResolveBound => Lease + TimeSpan.FromMilliseconds(750) + ProcessCluster.RetryTimeBox + ProcessCluster.Slack;

    [Fact]
    public async Task CoordinatorKilledBeforeEveryReplicaCommittedIsRolledBackByTheOther()
    {
        await using var c = await ProcessCluster.StartAsync(volumes: 3, replicas: 3, meta: await pg.CreateDatabaseAsync(), pendingLease: Lease);
        await c.StartCoordinatorBAsync();
        await c.WaitAllAliveAsync(c.UrlB);
        var before = RandomNumberGenerator.GetBytes(10_000);
        (await c.Client.PutAsync($"{c.Url}/before", new ByteArrayContent(before))).EnsureSuccessStatusCode();

        // Volume 0's commit stalls; volumes 1 and 2 commit; then A dies holding the pending record.
        await c.ArmAsync(0, "commit", "stall", stallMs: 60_000);
        var put = c.Client.PutAsync($"{c.Url}/inflight", new ByteArrayContent(RandomNumberGenerator.GetBytes(1024 * 1024)));
        await TestCluster.WaitUntilAsync(
            () => Enumerable.Range(1, 2).All(i => Directory.EnumerateFiles(Path.Combine(c.VolumeDir(i), "blobs"), "inflight", SearchOption.AllDirectories).Any()),
            TimeSpan.FromSeconds(30),
            "the write committed on volumes 1 and 2");
        Assert.Equal(1, await PendingAsync(c, c.UrlB)); // B sees A's pending write (and leaves it: A's lease runs)
        // Kill A only once the stall holds volume 0's commit (the other commits landing does not prove it was sent).
        await TestCluster.WaitUntilAsync(async () => await c.FaultHitsAsync(0, "commit") == 1, TimeSpan.FromSeconds(30), "volume 0's commit held by the stall");
        c.KillCoordinator();
        var killed = Stopwatch.StartNew();
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => put.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(1, await c.ClearFaultsAsync(0, "commit")); // the stall held volume 0's commit: the fault fired

        await TestCluster.WaitUntilAsync(async () => await PendingAsync(c, c.UrlB) == 0, ResolveBound, "B resolved A's pending write");
        Assert.True(killed.Elapsed <= ResolveBound, $"resolved after {killed.Elapsed}");
        Assert.Contains("claimed the pending write of inflight", c.CoordinatorB!.Output, StringComparison.Ordinal);
        await TestCluster.WaitUntilAsync(() => c.CoordinatorB!.Output.Contains("rolled back", StringComparison.Ordinal), TimeSpan.FromSeconds(30), "B's log says rolled back");

        // Wholly absent: no reader sees it, no volume keeps a blob of it; a retried PUT succeeds.
        using (var get = await c.Client.GetAsync($"{c.UrlB}/inflight"))
        {
            Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        }
        await TestCluster.WaitUntilAsync(
            () => Enumerable.Range(0, 3).All(i => !Directory.EnumerateFiles(Path.Combine(c.VolumeDir(i), "blobs"), "inflight", SearchOption.AllDirectories).Any()),
            TimeSpan.FromSeconds(30),
            "no blob of the rolled-back write");
        var retry = RandomNumberGenerator.GetBytes(300_000);
        using (var again = await c.Client.PutAsync($"{c.UrlB}/inflight", new ByteArrayContent(retry)))
        {
            Assert.Equal(HttpStatusCode.Created, again.StatusCode);
        }
        Assert.Equal(retry, await c.Client.GetByteArrayAsync($"{c.UrlB}/inflight"));
        Assert.Equal(before, await c.Client.GetByteArrayAsync($"{c.UrlB}/before"));
    }

    [Fact]
    public async Task CoordinatorKilledAfterEveryReplicaCommittedIsRolledForwardByTheOther()
    {
        await using var c = await ProcessCluster.StartAsync(
            volumes: 3,
            replicas: 3,
            meta: await pg.CreateDatabaseAsync(),
            pendingLease: Lease,
            hooks: name => name == "coord" ? new ProcessHook(new Dictionary<string, string> { ["NANOKV_CRASH_AT"] = CrashPoint.CoordinatorAfterCommitFanOut }) : null);
        await c.StartCoordinatorBAsync();
        await c.WaitAllAliveAsync(c.UrlB);

        var data = RandomNumberGenerator.GetBytes(500_000);
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => c.Client.PutAsync($"{c.Url}/crashed", new ByteArrayContent(data)).WaitAsync(TimeSpan.FromSeconds(30)));
        var killed = Stopwatch.StartNew();
        await c.Coordinator!.WaitForExitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains($"crash point {CrashPoint.CoordinatorAfterCommitFanOut}", c.Coordinator.Output, StringComparison.Ordinal);

        await TestCluster.WaitUntilAsync(async () => await PendingAsync(c, c.UrlB) == 0, ResolveBound, "B resolved A's pending write");
        Assert.True(killed.Elapsed <= ResolveBound, $"resolved after {killed.Elapsed}");
        // B logs the outcome after its swap lands, and its output is read asynchronously: await the line.
        await TestCluster.WaitUntilAsync(
            () => c.CoordinatorB!.Output.Contains("recovered pending crashed: rolled", StringComparison.Ordinal),
            TimeSpan.FromSeconds(10),
            "B logged how it resolved the write");
        Assert.Contains("claimed the pending write of crashed", c.CoordinatorB!.Output, StringComparison.Ordinal);
        Assert.Contains("recovered pending crashed: rolled forward", c.CoordinatorB.Output, StringComparison.Ordinal);

        // Wholly present (every replica committed it with the recorded hash); the key is write-once, so a retried
        // PUT hears 409, and after a DELETE a new PUT succeeds.
        Assert.Equal(data, await c.Client.GetByteArrayAsync($"{c.UrlB}/crashed"));
        using (var again = await c.Client.PutAsync($"{c.UrlB}/crashed", new ByteArrayContent(data)))
        {
            Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);
        }
        (await c.Client.DeleteAsync($"{c.UrlB}/crashed")).EnsureSuccessStatusCode();
        using (var fresh = await c.Client.PutAsync($"{c.UrlB}/crashed", new ByteArrayContent(data[..1000])))
        {
            Assert.Equal(HttpStatusCode.Created, fresh.StatusCode);
        }
        Assert.Equal(data[..1000], await c.Client.GetByteArrayAsync($"{c.UrlB}/crashed"));
    }

    /// <summary>Two live sweepers race for the same lapsed writes: each write is claimed and rolled back exactly once.</summary>
    [Fact]
    public async Task TwoSweepersResolveEachLapsedWriteOnce()
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.CreateDatabaseAsync());
        await using var b = CoordinatorServer.Create(c.Coordinator.Options with { Port = 0, DbDir = Path.Combine(c.Root, "index-b") });
        await b.StartAsync().WaitAsync(TimeSpan.FromSeconds(60));
        await TestCluster.WaitUntilAsync(() => b.Nodes.AliveIds().Count == 3, TimeSpan.FromSeconds(60), "coordinator B sees the volumes alive");
        var a = c.Coordinator;
        Assert.NotEqual(a.Objects.Settings.CoordinatorId, b.Objects.Settings.CoordinatorId);

        // Pending records of a coordinator that died long ago (its lease lapsed), with uploads no volume knows.
        // Counted from before they exist: the background sweepers may roll one back as soon as it is written.
        var rollbacksBefore = a.Objects.Metrics.Rollbacks.Value + b.Objects.Metrics.Rollbacks.Value;
        const int Count = 20;
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var replicas = a.Nodes.AliveIds().Take(3).ToList();
        for (var i = 0; i < Count; i++)
        {
            Assert.True(a.Store.CompareAndSwap(Encoding.UTF8.GetBytes($"lapsed-{i}"), null, new ObjectMeta
            {
                State = ObjectState.Pending,
                Replicas = replicas,
                UploadId = Guid.NewGuid().ToString("N"),
                Version = a.Store.VersionHighWater() + 1 + i,
                CreatedMs = now,
                UpdatedMs = now,
                Owner = "dead-coordinator",
                LeaseUntilMs = now - 1,
            }));
        }
        var swept = await Task.WhenAll(a.Objects.SweepPendingOnceAsync(CancellationToken.None), b.Objects.SweepPendingOnceAsync(CancellationToken.None)).WaitAsync(TimeSpan.FromSeconds(60));
        await TestCluster.WaitUntilAsync(() => a.Store.PendingKeys().Count == 0, TimeSpan.FromSeconds(30), "every lapsed write resolved");
        // The background sweepers race too; whoever claimed, each write was rolled back once in total (a rollback
        // is counted before its record goes, so no count is still outstanding here).
        Assert.Equal(Count, a.Objects.Metrics.Rollbacks.Value + b.Objects.Metrics.Rollbacks.Value - rollbacksBefore);
        Assert.True(swept.Sum() <= Count, $"explicit sweeps resolved {swept[0]} + {swept[1]}");
        for (var i = 0; i < Count; i++)
        {
            Assert.Null(a.Store.Get(Encoding.UTF8.GetBytes($"lapsed-{i}")));
        }
    }

    /// <summary>A PUT longer than its lease keeps it by renewing: no other coordinator takes it over.</summary>
    [Fact]
    public async Task APutOutlivingItsLeaseRenewsIt()
    {
        await using var c = await TestCluster.StartAsync(
            meta: await pg.CreateDatabaseAsync(),
            configure: o => o with { DataPath = o.DataPath with { PendingLease = TimeSpan.FromSeconds(1) } });
        await using var b = CoordinatorServer.Create(c.Coordinator.Options with { Port = 0, DbDir = Path.Combine(c.Root, "index-b") });
        await b.StartAsync().WaitAsync(TimeSpan.FromSeconds(60));
        await TestCluster.WaitUntilAsync(() => b.Nodes.AliveIds().Count == 3, TimeSpan.FromSeconds(60), "coordinator B sees the volumes alive");

        // The body trickles in for several leases; B sweeps meanwhile and must leave the write alone.
        var body = new SlowStream(RandomNumberGenerator.GetBytes(64 * 1024), TimeSpan.FromSeconds(4));
        using var put = await c.Client.PutAsync($"{c.Url}/slow", new StreamContent(body)).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(put.StatusCode == HttpStatusCode.Created, $"{(int)put.StatusCode} {await put.Content.ReadAsStringAsync()}");
        Assert.True(body.Elapsed > TimeSpan.FromSeconds(3), $"the PUT ran {body.Elapsed}, not several leases");
        Assert.Equal(body.Data, await c.Client.GetByteArrayAsync($"{b.Url}/slow"));
        Assert.Equal(0, b.Objects.Metrics.Rollbacks.Value); // B never took the write over (the 201 says so too)
    }

    private static async Task<int> PendingAsync(ProcessCluster c, string url) =>
        (await c.Admin.GetFromJsonAsync<JsonElement>($"{url}/healthz")).GetProperty("pending").GetInt32();

    /// <summary>A request body that hands out its bytes in small pieces over a given time.</summary>
    private sealed class SlowStream(byte[] data, TimeSpan total) : Stream
    {
        private readonly Stopwatch _clock = new();
        private int _pos;

        public byte[] Data => data;

        public TimeSpan Elapsed => _clock.Elapsed;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => _pos; set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            _clock.Start();
            if (_pos >= data.Length)
            {
                return 0;
            }
            const int Pieces = 16;
            await Task.Delay(total / Pieces, cancellationToken);
            var n = Math.Min(Math.Min(buffer.Length, data.Length / Pieces), data.Length - _pos);
            data.AsMemory(_pos, n).CopyTo(buffer);
            _pos += n;
            return n;
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
