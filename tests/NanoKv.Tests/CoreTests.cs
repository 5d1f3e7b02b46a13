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
}
