using System.Security.Cryptography;
using NanoKv.S3.Payload;

namespace NanoKv.Tests.S3Model;

/// <summary>Skips where the CPU has no AVX-512 (the S3 front end then hashes with the runtime's MD5).</summary>
public sealed class Avx512FactAttribute : FactAttribute
{
    public Avx512FactAttribute()
    {
        if (!Md5Lanes.Supported)
        {
            Skip = "no AVX-512 on this CPU: S3 ETags use the runtime's MD5 here";
        }
    }
}

/// <summary>The lanes' MD5 equals the runtime's, for every length around the block and buffer edges and for many bodies at once.</summary>
public class LaneMd5Tests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Avx512Fact]
    public async Task EveryLengthAroundTheBlockAndBufferEdgesHashesAsTheRuntimesMd5()
    {
        const int B = Md5Lanes.BufferSize;
        var rng = new Random(7);
        foreach (var length in new[] { 0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, B - 65, B - 64, B - 56, B - 1, B, B + 1, B + 63, (3 * B) + 77 })
        {
            var data = RandomNumberGenerator.GetBytes(length);
            Assert.Equal(MD5.HashData(data), await HashInChunksAsync(data, rng).WaitAsync(Timeout));
        }
    }

    [Avx512Fact]
    public async Task ManyBodiesAtOnceEachGetTheirOwnMd5()
    {
        var bodies = Enumerable.Range(0, 40).Select(i => RandomNumberGenerator.GetBytes(Random.Shared.Next(0, 3 << 20))).ToArray();
        var digests = await Task.WhenAll(bodies.Select((b, i) => Task.Run(() => HashInChunksAsync(b, new Random(i))))).WaitAsync(Timeout);
        for (var i = 0; i < bodies.Length; i++)
        {
            Assert.Equal(MD5.HashData(bodies[i]), digests[i]);
        }
    }

    [Avx512Fact]
    public async Task AnAbandonedBodyLeavesTheOthersCorrect()
    {
        var abandoned = new LaneMd5();
        await abandoned.AppendAsync(RandomNumberGenerator.GetBytes(Md5Lanes.BufferSize + 100)); // one buffer queued
        abandoned.Dispose();
        var data = RandomNumberGenerator.GetBytes((2 * Md5Lanes.BufferSize) + 5);
        Assert.Equal(MD5.HashData(data), await HashInChunksAsync(data, new Random(3)).WaitAsync(Timeout));
    }

    [Avx512Fact]
    public async Task BodiesReadTogetherThroughVerifyingStreamsGetTheirEtagsFromTheLanes()
    {
        var bodies = Enumerable.Range(0, Md5Lanes.MinBodies + 2).Select(_ => RandomNumberGenerator.GetBytes(Random.Shared.Next(1, 2 << 20))).ToArray();
        var streams = bodies.Select(b => new VerifyingStream(new MemoryStream(b), PayloadChecks.None with { ExpectedLength = b.Length })).ToArray();
        try
        {
            Assert.True(streams[^1].HashesOnLanes, "with this many bodies open the last one uses the lanes");
            await Task.WhenAll(streams.Select(s => s.CopyToAsync(Stream.Null))).WaitAsync(Timeout);
            for (var i = 0; i < bodies.Length; i++)
            {
                Assert.Equal(Convert.ToHexStringLower(MD5.HashData(bodies[i])), streams[i].Md5Hex);
            }
        }
        finally
        {
            Array.ForEach(streams, s => s.Dispose());
        }
    }

    /// <summary>Appended in random pieces, as a request body arrives.</summary>
    private static async Task<byte[]> HashInChunksAsync(byte[] data, Random rng)
    {
        var md5 = new LaneMd5();
        for (var at = 0; at < data.Length;)
        {
            var n = Math.Min(data.Length - at, rng.Next(1, 200_000));
            await md5.AppendAsync(data.AsMemory(at, n));
            at += n;
        }
        return await md5.FinishAsync();
    }
}
