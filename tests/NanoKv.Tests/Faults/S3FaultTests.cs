using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Faults;

/// <summary>
/// Fault scenarios through the S3 endpoint of real processes: a volume killed in the middle of a multipart
/// upload, and the coordinator killed on either side of CompleteMultipartUpload's switch. Nothing
/// acknowledged is lost and an object is never half visible.
/// </summary>
public sealed class S3FaultTests
{
    private const int MiB = 1024 * 1024;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    private static AmazonS3Client Client(ProcessCluster c, int retries = 0) => new(
        new BasicAWSCredentials(ProcessCluster.S3AccessKey, ProcessCluster.S3SecretKey),
        new AmazonS3Config { ServiceURL = c.S3Url, ForcePathStyle = true, AuthenticationRegion = "us-east-1", MaxErrorRetry = retries });

    [Fact]
    public async Task AVolumeKilledMidPartUploadLosesNothingAcknowledged()
    {
        await using var c = await ProcessCluster.StartAsync(volumes: 3, replicas: 2);
        using var s3 = Client(c);
        await s3.PutBucketAsync("mpbucket").WaitAsync(Timeout);
        var init = await s3.InitiateMultipartUploadAsync("mpbucket", "big.bin").WaitAsync(Timeout);
        byte[][] parts = [Bytes(5 * MiB, 1), Bytes(5 * MiB, 2), Bytes(MiB, 3)];
        var etags = new List<PartETag> { new(1, (await UploadPartAsync(s3, init.UploadId, 1, new MemoryStream(parts[0]))).ETag) };

        // Part 2 pauses half way; the volume receiving it is killed; the body then continues.
        var gate = new PausingStream(parts[1], pauseAt: 2 * MiB);
        var inFlight = UploadPartAsync(s3, init.UploadId, 2, gate);
        await gate.Reached.WaitAsync(Timeout);
        var victim = await FirstAsync(() => Enumerable.Range(0, 3).FirstOrDefault(i => c.TmpLeftovers(i).Any(), -1), "an upload in some volume's tmp/");
        c.KillVolume(victim);
        gate.Release();
        try
        {
            etags.Add(new PartETag(2, (await inFlight.WaitAsync(Timeout)).ETag));
        }
        catch (AmazonS3Exception e) when ((int)e.StatusCode >= 500)
        {
            // Not acknowledged: the client retries the part, as S3 clients do, once the volume is seen down.
            await TestCluster.WaitUntilAsync(async () => await c.StatusOfAsync(victim) == "down", ProcessCluster.StatusChangeBound, $"vol{victim} down");
            etags.Add(new PartETag(2, (await UploadPartAsync(s3, init.UploadId, 2, new MemoryStream(parts[1]))).ETag));
        }
        etags.Add(new PartETag(3, (await UploadPartAsync(s3, init.UploadId, 3, new MemoryStream(parts[2]))).ETag));
        await s3.CompleteMultipartUploadAsync(new CompleteMultipartUploadRequest { BucketName = "mpbucket", Key = "big.bin", UploadId = init.UploadId, PartETags = etags }).WaitAsync(Timeout);
        Assert.Equal(parts.SelectMany(p => p).ToArray(), await GetAsync(s3, "mpbucket", "big.bin"));

        await c.StartVolumeAsync(victim);
        await c.WaitAllAliveAsync();
        var verify = await c.OpsAsync("verify", deep: true).WaitAsync(Timeout);
        Assert.Equal(0, verify.Count("corrupted"));
        Assert.Equal(0, verify.Count("s3_dangling_records"));
        Assert.Equal(parts.SelectMany(p => p).ToArray(), await GetAsync(s3, "mpbucket", "big.bin"));
    }

    [Theory]
    [InlineData(CrashPoint.CoordinatorBeforeCompleteSwitch)]
    [InlineData(CrashPoint.CoordinatorAfterCompleteSwitch)]
    public async Task ACoordinatorKilledDuringCompleteLeavesTheObjectWhollyAbsentOrWhollyThere(string crashAt)
    {
        await using var c = await ProcessCluster.StartAsync(volumes: 3, replicas: 2);
        byte[][] parts = [Bytes(5 * MiB, 4), Bytes(100_000, 5)];
        string uploadId;
        List<PartETag> etags = [];
        using (var s3 = Client(c))
        {
            await s3.PutBucketAsync("bkt").WaitAsync(Timeout);
            uploadId = (await s3.InitiateMultipartUploadAsync("bkt", "obj").WaitAsync(Timeout)).UploadId;
            for (var i = 0; i < parts.Length; i++)
            {
                etags.Add(new PartETag(i + 1, (await UploadPartAsync(s3, uploadId, i + 1, new MemoryStream(parts[i]), "bkt", "obj")).ETag));
            }
        }
        c.KillCoordinator();
        await c.StartCoordinatorAsync(new Dictionary<string, string> { ["NANOKV_CRASH_AT"] = crashAt });
        await c.WaitAllAliveAsync();
        var complete = new CompleteMultipartUploadRequest { BucketName = "bkt", Key = "obj", UploadId = uploadId, PartETags = etags };
        using (var s3 = Client(c))
        {
            await Assert.ThrowsAnyAsync<Exception>(() => s3.CompleteMultipartUploadAsync(complete).WaitAsync(Timeout));
        }
        await c.Coordinator!.WaitForExitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains($"crash point {crashAt}", c.Coordinator.Output, StringComparison.Ordinal); // the fault fired
        await c.StartCoordinatorAsync();
        await c.WaitAllAliveAsync();

        using var after = Client(c);
        var whole = parts.SelectMany(p => p).ToArray();
        if (crashAt == CrashPoint.CoordinatorBeforeCompleteSwitch)
        {
            var missing = await Assert.ThrowsAnyAsync<AmazonS3Exception>(() => after.GetObjectAsync("bkt", "obj").WaitAsync(Timeout));
            Assert.Equal("NoSuchKey", missing.ErrorCode);
            Assert.Equal(2, (await after.ListPartsAsync("bkt", "obj", uploadId).WaitAsync(Timeout)).Parts.Count);
            await after.CompleteMultipartUploadAsync(complete).WaitAsync(Timeout); // the client's retry finishes it
        }
        else
        {
            // SDK v4 leaves empty lists null.
            Assert.Empty((await after.ListMultipartUploadsAsync("bkt").WaitAsync(Timeout)).MultipartUploads ?? []);
        }
        Assert.Equal(whole, await GetAsync(after, "bkt", "obj"));
        var verify = await c.OpsAsync("verify", deep: true).WaitAsync(Timeout);
        Assert.Equal(0, verify.Count("corrupted"));
        Assert.Equal(0, verify.Count("s3_dangling_records"));
    }

    private static async Task<UploadPartResponse> UploadPartAsync(AmazonS3Client s3, string uploadId, int part, Stream body, string bucket = "mpbucket", string key = "big.bin") =>
        await s3.UploadPartAsync(new UploadPartRequest { BucketName = bucket, Key = key, UploadId = uploadId, PartNumber = part, InputStream = body, PartSize = body.Length }).WaitAsync(Timeout);

    private static async Task<byte[]> GetAsync(AmazonS3Client s3, string bucket, string key)
    {
        using var resp = await s3.GetObjectAsync(bucket, key).WaitAsync(Timeout);
        using var ms = new MemoryStream();
        await resp.ResponseStream.CopyToAsync(ms).WaitAsync(Timeout);
        return ms.ToArray();
    }

    private static byte[] Bytes(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static async Task<int> FirstAsync(Func<int> probe, string what)
    {
        var found = -1;
        await TestCluster.WaitUntilAsync(() => (found = probe()) >= 0, Timeout, what);
        return found;
    }

    /// <summary>A body that stops after pauseAt bytes until released, so a test can act mid-upload.</summary>
    private sealed class PausingStream(byte[] data, int pauseAt) : MemoryStream(data)
    {
        private readonly TaskCompletionSource _reached = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Reached => _reached.Task;

        public void Release() => _release.TrySetResult();

        public override async Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
            await ReadAsync(buffer.AsMemory(offset, count), ct);

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
        {
            if (Position >= pauseAt)
            {
                _reached.TrySetResult();
                await _release.Task.WaitAsync(ct);
            }
            var max = Position < pauseAt ? (int)Math.Min(buffer.Length, pauseAt - Position) : buffer.Length;
            return await base.ReadAsync(buffer[..max], ct);
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (Position >= pauseAt)
            {
                _reached.TrySetResult();
                // The SDK may read synchronously; this test-only stream blocks that thread until released.
                _release.Task.WaitAsync(Timeout).GetAwaiter().GetResult();
            }
            var max = Position < pauseAt ? (int)Math.Min(count, pauseAt - Position) : count;
            return base.Read(buffer, offset, max);
        }
    }
}
