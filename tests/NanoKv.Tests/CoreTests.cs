using System.Security.Cryptography;
using NanoKv.Core;

namespace NanoKv.Tests;

public class CoreTests
{
    [Fact]
    public async Task CopierHashesAndCountsWhatItCopies()
    {
        var data = RandomNumberGenerator.GetBytes(1_000_003);
        using var dst = new MemoryStream();
        var r = await StreamCopier.CopyAsync(new MemoryStream(data), dst, CancellationToken.None);
        Assert.True(r.Ok);
        Assert.Equal(data.Length, r.Bytes);
        Assert.Equal(Blake3.Hasher.Hash(data).ToString(), r.Etag);
        Assert.Equal(data, dst.ToArray());
    }

    [Fact]
    public async Task CopierClassifiesFailures()
    {
        var data = new byte[1000];
        var tooLong = await StreamCopier.CopyAsync(new MemoryStream(data), (_, _) => ValueTask.CompletedTask, 10, CancellationToken.None);
        Assert.Equal(CopyStatus.InputError, tooLong.Status);
        var badSink = await StreamCopier.CopyAsync(new MemoryStream(data), (_, _) => throw new IOException("disk"), long.MaxValue, CancellationToken.None);
        Assert.Equal(CopyStatus.OutputError, badSink.Status);
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        var canceled = await StreamCopier.CopyAsync(new MemoryStream(data), (_, _) => ValueTask.CompletedTask, long.MaxValue, cts.Token);
        Assert.Equal(CopyStatus.Canceled, canceled.Status);
    }

    [Fact]
    public void VersionClockIsStrictlyMonotonicAndHonoursFloors()
    {
        var clock = new VersionClock();
        var last = 0L;
        for (var i = 0; i < 10_000; i++)
        {
            var v = clock.Next();
            Assert.True(v > last);
            last = v;
        }
        var future = last + 10_000_000_000;
        clock.Observe(future);
        Assert.True(clock.Next() > future);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1000)]
    [InlineData(StreamCopier.BufferSize)]
    [InlineData(StreamCopier.BufferSize * 2)]
    [InlineData((StreamCopier.BufferSize * 5) + 17)]
    public async Task VerifiedCopyPassesGoodBytesAndWithholdsTheLastChunkOfBadOnes(int size)
    {
        var data = RandomNumberGenerator.GetBytes(size);
        var etag = Blake3.Hasher.Hash(data).ToString();
        using (var dst = new MemoryStream())
        {
            var ok = await StreamCopier.CopyVerifiedAsync(new MemoryStream(data), dst, etag, default);
            Assert.Equal(CopyStatus.Ok, ok.Status);
            Assert.Equal(data, dst.ToArray());
        }
        using (var dst = new MemoryStream())
        {
            var bad = await StreamCopier.CopyVerifiedAsync(new MemoryStream(data), dst, new string('0', 64), default);
            Assert.Equal(CopyStatus.InputError, bad.Status);
            Assert.True(dst.Length < size || size == 0, $"{dst.Length} of {size} bytes went out");
            Assert.Equal(data[..(int)dst.Length], dst.ToArray());
        }
    }
    [Theory]
    [InlineData(0)]
    [InlineData(1000)]
    [InlineData((StreamCopier.BufferSize * 3) + 17)]
    public async Task RelayMovesEveryByteIntoThePipeAndClassifiesFailures(int size)
    {
        var data = RandomNumberGenerator.GetBytes(size);
        var unbounded = new System.IO.Pipelines.PipeOptions(pauseWriterThreshold: 0); // nothing reads until the relay is done
        var pipe = new System.IO.Pipelines.Pipe(unbounded);
        var ok = await StreamCopier.RelayAsync(new MemoryStream(data), pipe.Writer, default).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(CopyStatus.Ok, ok.Status);
        Assert.Equal(size, ok.Bytes);
        await pipe.Writer.CompleteAsync();
        await using var received = new MemoryStream();
        await pipe.Reader.AsStream().CopyToAsync(received).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(data, received.ToArray());

        // A source that fails after the first chunk: an input error, not a normal end (the caller aborts the response).
        var failing = new FailingAfterStream(RandomNumberGenerator.GetBytes(StreamCopier.BufferSize * 2), StreamCopier.BufferSize + 5);
        var cut = await StreamCopier.RelayAsync(failing, new System.IO.Pipelines.Pipe(unbounded).Writer, default).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(CopyStatus.InputError, cut.Status);

        // A reader that went away: an output error.
        var gone = new System.IO.Pipelines.Pipe();
        await gone.Reader.CompleteAsync();
        var closed = await StreamCopier.RelayAsync(new MemoryStream(new byte[StreamCopier.BufferSize * 2]), gone.Writer, default).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(CopyStatus.OutputError, closed.Status);
    }

    /// <summary>Yields its bytes up to failAt, then throws as a dropped connection would.</summary>
    private sealed class FailingAfterStream(byte[] data, int failAt) : MemoryStream(data)
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (Position >= failAt)
            {
                throw new IOException("connection reset");
            }
            return base.ReadAsync(buffer[..(int)Math.Min(buffer.Length, failAt - Position)], cancellationToken);
        }
    }
}
