using System.Security.Cryptography;
using NanoKv.Core;
using NanoKv.S3;
using NanoKv.S3.Payload;

namespace NanoKv.Tests.S3Model;

/// <summary>Skips where the CPU has no AVX-512 (the S3 front end then hashes with the runtime's MD5).</summary>
public sealed class Avx512FactAttribute : FactAttribute
{
    public Avx512FactAttribute()
    {
        if (!Md5Lanes.Supported)
        {
            Skip = "MD5 lanes off (no AVX-512, or NANOKV_MD5_LANES=0): S3 ETags use the runtime's MD5";
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

    [Avx512Fact]
    public async Task BodiesPumpedToReplicasAreHashedInThePumpsOwnBuffers()
    {
        // Whole pump chunks, a chunk and a byte, a partial one, tiny and empty bodies, read in uneven pieces.
        int[] sizes = [3 * StreamCopier.BufferSize, (3 * StreamCopier.BufferSize) + 1, (1 << 20) + 17, 100, 0, StreamCopier.BufferSize - 64];
        var bodies = sizes.Select(n => RandomNumberGenerator.GetBytes(n)).ToArray();
        // Opened first so that every body below counts enough open ones to take the lanes.
        var others = Enumerable.Range(0, Md5Lanes.MinBodies).Select(_ => new VerifyingStream(Stream.Null, PayloadChecks.None)).ToArray();
        var streams = bodies.Select(b => new VerifyingStream(new TrickleStream(b), PayloadChecks.None with { ExpectedLength = b.Length })).ToArray();
        try
        {
            Assert.All(streams, s => Assert.True(s.HashesOnLanes));
            var copies = await Task.WhenAll(streams.Select(PumpToTwoTargetsAsync)).WaitAsync(Timeout);
            for (var i = 0; i < bodies.Length; i++)
            {
                Assert.Equal(Convert.ToHexStringLower(MD5.HashData(bodies[i])), streams[i].Md5Hex);
                Assert.All(copies[i], copy => Assert.Equal(bodies[i], copy));
            }
            // Every whole chunk before the last was hashed where the pump read it (the last one by the end of the body).
            Assert.Equal(3, streams[0].ChunksLent);
            Assert.Equal(3, streams[1].ChunksLent);
        }
        finally
        {
            Array.ForEach(streams, s => s.Dispose());
            Array.ForEach(others, s => s.Dispose());
        }
    }

    [Avx512Fact]
    public async Task ADeferredMd5IsCheckedAgainstContentMd5WhenTheWriterAsksBeforeCommitting()
    {
        var others = Enumerable.Range(0, Md5Lanes.MinBodies).Select(_ => new VerifyingStream(Stream.Null, PayloadChecks.None)).ToArray();
        var bodies = Enumerable.Range(0, 4).Select(i => RandomNumberGenerator.GetBytes((i + 1) * StreamCopier.BufferSize + i)).ToArray();
        // The last one claims another body's Content-MD5.
        var streams = bodies.Select((b, i) => new VerifyingStream(new TrickleStream(b), PayloadChecks.None with
        {
            ExpectedLength = b.Length,
            ContentMd5 = MD5.HashData(bodies[i == 3 ? 0 : i]),
        }, deferMd5: true)).ToArray();
        try
        {
            Assert.All(streams, s => Assert.True(s.HashesOnLanes));
            await Task.WhenAll(streams.Select(PumpToTwoTargetsAsync)).WaitAsync(Timeout);
            Assert.All(streams, s => Assert.Null(s.Md5)); // not finished by the end of the body
            var errors = await Task.WhenAll(streams.Select(s => s.CompleteAsync().AsTask())).WaitAsync(Timeout);
            for (var i = 0; i < 3; i++)
            {
                Assert.Null(errors[i]);
                Assert.Equal(Convert.ToHexStringLower(MD5.HashData(bodies[i])), streams[i].Md5Hex);
            }
            Assert.Equal(S3ErrorCode.BadDigest, errors[3]?.Code);
            Assert.Same(errors[3], streams[3].Failure);
            Assert.Null(streams[3].Md5);
        }
        finally
        {
            Array.ForEach(streams, s => s.Dispose());
            Array.ForEach(others, s => s.Dispose());
        }
    }

    private static async Task<byte[][]> PumpToTwoTargetsAsync(VerifyingStream body)
    {
        var broadcast = new Broadcast(2, TimeSpan.FromSeconds(30));
        var targets = Enumerable.Range(0, 2).Select(async i =>
        {
            using var sink = new MemoryStream();
            await broadcast.ContentFor(i, body.Length).CopyToAsync(sink);
            return sink.ToArray();
        }).ToArray();
        var result = await broadcast.PumpAsync(body, long.MaxValue, CancellationToken.None);
        Assert.True(result.Ok, result.Error?.ToString());
        return await Task.WhenAll(targets);
    }

    /// <summary>Returns at most a few KiB per read, as a socket does.</summary>
    private sealed class TrickleStream(byte[] data) : MemoryStream(data)
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            base.ReadAsync(buffer[..Math.Min(buffer.Length, Random.Shared.Next(1, 9000))], cancellationToken);
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
