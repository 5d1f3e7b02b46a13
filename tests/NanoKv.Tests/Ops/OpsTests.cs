using System.Net;
using System.Security.Cryptography;
using System.Text;
using NanoKv.Core;
using NanoKv.Metadata;
using NanoKv.Ops;
using NanoKv.Tests.Infrastructure;
using NanoKv.Tests.Metadata;

namespace NanoKv.Tests.Ops;

/// <summary>The ops commands against real volumes and coordinators, offline (--index) and live (--coord).</summary>
public class OpsTests(PostgresFixture pg) : IClassFixture<PostgresFixture>
{
    /// <summary>The live ops tests that run on both metadata backends (offline mode opens RocksDB only).</summary>
    public static TheoryData<MetaBackendKind> Backends => MetaLocation.All;

    private static async Task<Dictionary<string, byte[]>> PutManyAsync(TestCluster c, int count, string prefix = "k", int size = 4096)
    {
        var written = new Dictionary<string, byte[]>();
        for (var i = 0; i < count; i++)
        {
            var name = $"{prefix}{i:D3}";
            var data = RandomNumberGenerator.GetBytes(size + i);
            using var put = await c.Client.PutAsync($"{c.Url}/{name}", new ByteArrayContent(data));
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
            written[name] = data;
        }
        return written;
    }

    private static OpsOptions Opts(string command, TestCluster c, bool deep = false, bool dryRun = false, int? replicas = null) => new()
    {
        Command = command,
        Nodes = c.Volumes.Where(v => v is not null).Select(v => $"{v!.NodeId}={v.Url}").ToList(),
        Deep = deep,
        DryRun = dryRun,
        Replicas = replicas,
    };

    private static Task<Report> LiveAsync(TestCluster c, OpsOptions o) => OpsCli.RunLiveAsync(c.Url, o, c.Secret, quiet: true, CancellationToken.None);

    private static async Task<Report> OfflineAsync(TestCluster c, OpsOptions o)
    {
        await c.StopCoordinatorAsync();
        try
        {
            return await OpsCli.RunOfflineAsync(c.Coordinator.Options.DbDir, o, c.Secret, null, quiet: true, CancellationToken.None);
        }
        finally
        {
            await c.StartCoordinatorAsync();
        }
    }

    /// <summary>
    /// Data a delete left behind, which only gc may remove: the key is deleted while the volume is down
    /// (the coordinator finishes that delete when it returns), then the volume's old copy comes back
    /// without its tombstone, as if its folder were restored from a backup taken before the delete.
    /// </summary>
    private static async Task PlantMissedDeleteAsync(TestCluster c, int volume, string key)
    {
        var path = BlobPath(c, volume, key);
        var saved = Path.Combine(c.Root, $"{key}.saved");
        await c.StopVolumeAsync(volume, waitDown: true);
        File.Copy(path, saved);
        File.SetLastWriteTimeUtc(saved, File.GetLastWriteTimeUtc(path));
        (await c.Client.DeleteAsync($"{c.Url}/{key}")).EnsureSuccessStatusCode();
        await c.StartVolumeAsync(volume);
        await TestCluster.WaitUntilAsync(() => !File.Exists(path), TimeSpan.FromSeconds(10), $"owed delete of {key} finished");
        await c.StopVolumeAsync(volume);
        File.Delete(Path.Combine(c.Root, $"vol{volume}", "tombs", KeyCodec.BlobRelativePath(Encoding.UTF8.GetBytes(key))));
        File.Move(saved, path);
        await c.StartVolumeAsync(volume);
    }

    private static string BlobPath(TestCluster c, int volume, string key) => c.Volume(volume).Store.BlobPath(Encoding.UTF8.GetBytes(key));

    internal static void FlipByte(string path)
    {
        var bytes = File.ReadAllBytes(path);
        bytes[bytes.Length / 2] ^= 0xFF;
        // Rewrite in place and keep the mtime: the version must look untouched, only the bytes are bad.
        var mtime = File.GetLastWriteTimeUtc(path);
        File.WriteAllBytes(path, bytes);
        File.SetLastWriteTimeUtc(path, mtime);
    }

    /// <summary>Every file under every volume folder (path, size, mtime) and every metadata record.</summary>
    private static string Snapshot(TestCluster c)
    {
        var sb = new StringBuilder();
        foreach (var v in c.Volumes)
        {
            foreach (var f in Directory.GetFiles(v!.Store.Root, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            {
                var fi = new FileInfo(f);
                sb.Append(f).Append(' ').Append(fi.Length).Append(' ').Append(fi.LastWriteTimeUtc.Ticks).Append('\n');
            }
        }
        foreach (var (key, meta) in c.Coordinator.Store.Scan())
        {
            sb.Append(KeyCodec.Encode(key)).Append(' ').Append(meta).Append('\n');
        }
        return sb.ToString();
    }

    [Fact]
    public async Task RebuildAfterLosingTheIndexRestoresEveryKeyAndKeepsEveryDelete()
    {
        await using var c = await TestCluster.StartAsync();
        var data = await PutManyAsync(c, 20);
        var longKey = Enumerable.Repeat((byte)'L', 900).ToArray();
        (await c.Client.PutAsync($"{c.Url}/{KeyCodec.Encode(longKey)}", new ByteArrayContent([1, 2, 3]))).EnsureSuccessStatusCode();
        foreach (var name in data.Keys.Take(4))
        {
            (await c.Client.DeleteAsync($"{c.Url}/{name}")).EnsureSuccessStatusCode();
        }
        // A delete that missed one replica (down at the time) must not come back either.
        await c.StopVolumeAsync(2, waitDown: true);
        (await c.Client.DeleteAsync($"{c.Url}/k004")).EnsureSuccessStatusCode();
        // The coordinator goes first: a running one would deliver the owed delete as soon as volume 2 is back.
        await c.StopCoordinatorAsync();
        await c.StartVolumeAsync(2, waitAlive: false);
        Assert.True(File.Exists(BlobPath(c, 2, "k004")));

        TempDir.Delete(c.Coordinator.Options.DbDir);
        var report = await OpsCli.RunOfflineAsync(c.Coordinator.Options.DbDir, Opts("rebuild", c), null, null, quiet: true, CancellationToken.None);
        await c.StartCoordinatorAsync();

        Assert.True(report.Clean, string.Join("\n", report.Details));
        Assert.Equal(16, report.Count("restored")); // 15 live + the long key
        Assert.Equal(5, report.Count("tombstones_restored"));
        foreach (var (name, bytes) in data.Skip(5))
        {
            Assert.Equal(bytes, await c.Client.GetByteArrayAsync($"{c.Url}/{name}"));
            var meta = c.Coordinator.Store.Get(Encoding.UTF8.GetBytes(name))!;
            Assert.Equal(Blake3.Hasher.Hash(bytes).ToString(), meta.Etag);
            Assert.Equal(3, meta.Replicas.Count);
        }
        foreach (var name in data.Keys.Take(5))
        {
            using var gone = await c.Client.GetAsync($"{c.Url}/{name}");
            Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
            Assert.Equal(ObjectState.Tombstoned, c.Coordinator.Store.Get(Encoding.UTF8.GetBytes(name))!.State);
        }
        Assert.Equal([1, 2, 3], await c.Client.GetByteArrayAsync($"{c.Url}/{KeyCodec.Encode(longKey)}"));

        // Running it again finds everything indexed and keeps the tombstones.
        var again = await OfflineAsync(c, Opts("rebuild", c));
        Assert.Equal(0, again.Count("restored"));
        Assert.Equal(5, again.Count("kept_tombstones"));
    }

    [Fact]
    public async Task VerifyFindsExactlyThePlantedProblems()
    {
        await using var c = await TestCluster.StartAsync();
        await PutManyAsync(c, 10);
        File.Delete(BlobPath(c, 0, "k001"));                               // under-replicated
        await File.AppendAllTextAsync(BlobPath(c, 1, "k002"), "junk");     // corrupted (size)
        FlipByte(BlobPath(c, 2, "k003"));                                  // corrupted (bytes; --deep only)
        var stray = "stray"u8.ToArray();                                   // unindexed
        var vc = new VolumeClient(c.Client, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2));
        Assert.True((await vc.PrepareAsync(c.Volume(0).Url, stray, "stray1", 5, default)).Ok);
        Assert.True((await vc.UploadAsync(c.Volume(0).Url, "stray1", new ByteArrayContent([1, 2, 3, 4, 5]), default)).Ok);
        Assert.True((await vc.CommitAsync(c.Volume(0).Url, stray, "stray1", 1, default)).Ok);
        await PlantMissedDeleteAsync(c, 1, "k004");                        // should-GC

        var shallow = await LiveAsync(c, Opts("verify", c));
        Assert.Equal(1, shallow.Count("under_replicated"));
        Assert.Equal(1, shallow.Count("corrupted"));
        Assert.Equal(1, shallow.Count("unindexed"));
        Assert.Equal(1, shallow.Count("should_gc"));
        Assert.Equal(1, shallow.ExitCode);

        var deep = await OfflineAsync(c, Opts("verify", c, deep: true));
        Assert.Equal(2, deep.Count("corrupted"));
        Assert.Equal(1, deep.Count("under_replicated"));
        Assert.Equal(1, deep.Count("unindexed"));
        Assert.Equal(1, deep.Count("should_gc"));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task RepairRestoresReplicasAfterAWipeAndNeverCopiesFromACorruptReplica(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.MetaAsync(kind));
        var data = await PutManyAsync(c, 12);
        // A key whose first choice of source (HRW order among the survivors) is the replica we corrupt.
        var ids = c.Volumes.Select(v => v!.NodeId).ToList();
        var victim = data.Keys.First(k => Placement.Rank(Encoding.UTF8.GetBytes(k), [ids[1], ids[2]])[0] == ids[1]);
        FlipByte(BlobPath(c, 1, victim));
        Directory.Delete(c.Volume(0).Store.BlobsDir, recursive: true);    // wipe volume 0
        Directory.CreateDirectory(c.Volume(0).Store.BlobsDir);

        var repair = await LiveAsync(c, Opts("repair", c));
        Assert.Equal(12, repair.Count("copies"));
        foreach (var (name, bytes) in data)
        {
            Assert.Equal(bytes, await File.ReadAllBytesAsync(BlobPath(c, 0, name)));
        }
        // The source volume caught the bad bytes on the way out (verified reads) and quarantined its copy;
        // a deep verify sees the replica as missing and a repair restores it.
        Assert.False(File.Exists(BlobPath(c, 1, victim)));
        Assert.Single(Directory.GetFiles(Path.Combine(c.Volume(1).Store.Root, "quarantine"), "*.key"));
        var before = await LiveAsync(c, Opts("verify", c, deep: true));
        Assert.Equal(1, before.Count("under_replicated"));
        Assert.Equal(1, (await LiveAsync(c, Opts("repair", c, deep: true))).Count("copies"));
        Assert.Equal(data[victim], await File.ReadAllBytesAsync(BlobPath(c, 1, victim)));
        Assert.True((await LiveAsync(c, Opts("verify", c, deep: true))).Clean);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task GcRespectsTheTtlAndNeverDeletesTheLastCopy(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(volumes: 4, replicas: 3, meta: await pg.MetaAsync(kind));
        var data = await PutManyAsync(c, 6);
        var stale = "k000";
        var staleMeta = c.Coordinator.Store.Get(Encoding.UTF8.GetBytes(stale))!;
        var down = c.IndexOf(staleMeta.Replicas[0]);
        await PlantMissedDeleteAsync(c, down, stale);

        var young = await LiveAsync(c, Opts("gc", c) with { TombstoneTtlSecs = 3600 });
        Assert.Equal(1, young.Count("tombstones_kept"));
        Assert.True(File.Exists(BlobPath(c, down, stale)));

        var old = await LiveAsync(c, Opts("gc", c) with { TombstoneTtlSecs = 0, PurgeTombstoneMeta = true });
        Assert.Equal(1, old.Count("deleted_files"));
        Assert.Equal(1, old.Count("tombstones_purged"));
        Assert.False(File.Exists(BlobPath(c, down, stale)));
        Assert.Null(c.Coordinator.Store.Get(Encoding.UTF8.GetBytes(stale)));

        // An extra copy of k001 on the node outside its replica set, while one listed replica is missing:
        // the extra may be the last good copy, so gc keeps it; after repair it goes.
        var key = Encoding.UTF8.GetBytes("k001");
        var meta = c.Coordinator.Store.Get(key)!;
        var outsider = c.Volumes.Select(v => v!.NodeId).Except(meta.Replicas).Single();
        var vc = new VolumeClient(c.Client, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2));
        var o = c.VolumeById(outsider).Url;
        Assert.True((await vc.PrepareAsync(o, key, "extra1", meta.Size, default)).Ok);
        Assert.True((await vc.PullAsync(o, "extra1", c.VolumeById(meta.Replicas[0]).Url, meta.Etag, default)).Ok);
        Assert.True((await vc.CommitAsync(o, key, "extra1", meta.Version, default)).Ok);
        File.Delete(c.VolumeById(meta.Replicas[1]).Store.BlobPath(key));

        var guarded = await LiveAsync(c, Opts("gc", c) with { DeleteExtraneous = true });
        Assert.Equal(1, guarded.Count("kept_last_copy"));
        Assert.True(File.Exists(c.VolumeById(outsider).Store.BlobPath(key)));

        await LiveAsync(c, Opts("repair", c));
        var cleaned = await LiveAsync(c, Opts("gc", c) with { DeleteExtraneous = true });
        Assert.Equal(1, cleaned.Count("extraneous_deleted"));
        Assert.False(File.Exists(c.VolumeById(outsider).Store.BlobPath(key)));
        Assert.Equal(data["k001"], await c.Client.GetByteArrayAsync($"{c.Url}/k001"));
        Assert.True((await LiveAsync(c, Opts("verify", c, deep: true))).Clean);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task GcSweepsStaleTempFiles(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(meta: await pg.MetaAsync(kind));
        var vc = new VolumeClient(c.Client, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(2));
        Assert.True((await vc.PrepareAsync(c.Volume(0).Url, "t"u8.ToArray(), "abandoned", 10, default)).Ok);
        foreach (var f in Directory.GetFiles(c.Volume(0).Store.TmpDir))
        {
            File.SetLastWriteTimeUtc(f, DateTime.UtcNow.AddHours(-3));
        }
        var gc = await LiveAsync(c, Opts("gc", c));
        // The data file, plus its JSON state where the filesystem keeps no upload state in xattrs.
        Assert.True(gc.Count("tmp_files_removed") >= (c.Volume(0).Store.StateInXattr ? 1 : 2));
        Assert.Empty(Directory.GetFiles(c.Volume(0).Store.TmpDir, "abandoned*"));
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public async Task RebalanceAfterAddingAFourthVolumeMovesAQuarterOfTheCopiesAndKeysStayReadable(MetaBackendKind kind)
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 3, meta: await pg.MetaAsync(kind));
        var data = await PutManyAsync(c, 60, size: 2048);
        await c.AddVolumeAsync();

        using var stop = new CancellationTokenSource();
        var failures = 0;
        var reads = 0;
        var reader = Task.Run(async () =>
        {
            var names = data.Keys.ToList();
            for (var i = 0; !stop.IsCancellationRequested && i < 100_000; i++)
            {
                var name = names[i % names.Count];
                using var r = await c.Client.GetAsync($"{c.Url}/{name}");
                if (r.StatusCode != HttpStatusCode.OK || !(await r.Content.ReadAsByteArrayAsync()).SequenceEqual(data[name]))
                {
                    Interlocked.Increment(ref failures);
                }
                Interlocked.Increment(ref reads);
            }
        });
        var report = await LiveAsync(c, Opts("rebalance", c));
        await stop.CancelAsync();
        await reader;

        Assert.True(report.Clean, string.Join("\n", report.Details));
        var fraction = report.Count("copies") / (double)(data.Count * 3);
        Assert.InRange(fraction, 0.12, 0.40);
        Assert.Equal(report.Count("copies"), report.Count("deleted_old_copies"));
        Assert.Equal(0, failures);
        Assert.True(reads > 0);
        var nodes = c.Volumes.Select(v => v!.NodeId).ToList();
        foreach (var (name, bytes) in data)
        {
            var key = Encoding.UTF8.GetBytes(name);
            var meta = c.Coordinator.Store.Get(key)!;
            Assert.Equal(Placement.Choose(key, nodes, 3).Order(), meta.Replicas.Order());
            foreach (var v in c.Volumes)
            {
                Assert.Equal(meta.Replicas.Contains(v!.NodeId), File.Exists(v.Store.BlobPath(key)));
            }
            Assert.Equal(bytes, await c.Client.GetByteArrayAsync($"{c.Url}/{name}"));
        }
    }

    [Fact]
    public async Task DryRunChangesNothing()
    {
        await using var c = await TestCluster.StartAsync(volumes: 3, replicas: 2);
        await PutManyAsync(c, 10);
        (await c.Client.DeleteAsync($"{c.Url}/k000")).EnsureSuccessStatusCode();
        Directory.Delete(c.Volume(0).Store.BlobsDir, recursive: true);
        Directory.CreateDirectory(c.Volume(0).Store.BlobsDir);
        await c.AddVolumeAsync();

        var before = Snapshot(c);
        foreach (var command in Commands.Names)
        {
            var o = Opts(command, c, dryRun: true) with { TombstoneTtlSecs = 0, PurgeTombstoneMeta = true, DeleteExtraneous = true, PurgeOrphans = true, SweepTmpAgeSecs = 0 };
            var report = command == "rebuild" ? await OfflineAsync(c, o) : await LiveAsync(c, o);
            Assert.True(report.DryRun);
            if (command is "repair" or "rebalance")
            {
                Assert.True(report.Count("copies") > 0, $"{command} planned nothing");
            }
        }
        Assert.Equal(before, Snapshot(c));
    }

    [Fact]
    public async Task OfflineModeExplainsALockedIndex()
    {
        await using var c = await TestCluster.StartAsync(volumes: 1, replicas: 1);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            OpsCli.RunOfflineAsync(c.Coordinator.Options.DbDir, Opts("verify", c), null, null, quiet: true, CancellationToken.None));
        Assert.Contains("locked", ex.Message);
        Assert.Contains("--coord", ex.Message);
    }

    [Fact]
    public void DurationsParse()
    {
        Assert.Equal(7 * 86400, OpsOptions.ParseDuration("7d"));
        Assert.Equal(3600, OpsOptions.ParseDuration("1h"));
        Assert.Equal(90, OpsOptions.ParseDuration("90"));
        Assert.Throws<FormatException>(() => OpsOptions.ParseDuration("soon"));
    }
}
