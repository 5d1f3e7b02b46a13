using System.IO.Pipelines;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;
using NanoKv.Volume;

namespace NanoKv.Tests.Perf;

/// <summary>The one-copy verified GET keeps its guarantee: a body that does not match never goes out whole.</summary>
public class VerifiedSendTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1000)]
    [InlineData(VerifiedSend.ChunkSize)]
    [InlineData((2 * VerifiedSend.ChunkSize) + 12345)]
    public async Task MatchingBlobIsSentWhole(int size)
    {
        var (path, data, etag) = await BlobAsync(size);
        var (result, sent) = await SendAsync(path, size, etag);
        Assert.Equal(CopyStatus.Ok, result.Status);
        Assert.Equal(etag, result.Etag);
        Assert.Equal(data, sent);
    }

    [Theory]
    [InlineData(1000)]
    [InlineData((2 * VerifiedSend.ChunkSize) + 12345)]
    public async Task MismatchHoldsBackTheLastChunk(int size)
    {
        var (path, _, etag) = await BlobAsync(size);
        var wrong = etag[..^1] + (etag[^1] == '0' ? '1' : '0');
        var (result, sent) = await SendAsync(path, size, wrong);
        Assert.Equal(CopyStatus.InputError, result.Status);
        Assert.True(sent.Length < size, $"{sent.Length} of {size} bytes went out despite the mismatch");
        Assert.Equal(size - ((size - 1) % VerifiedSend.ChunkSize) - 1, sent.Length);
    }

    [Fact]
    public async Task BlobShorterThanItsLengthIsAnInputError()
    {
        var (path, _, etag) = await BlobAsync(1000);
        var (result, sent) = await SendAsync(path, 2000, etag);
        Assert.Equal(CopyStatus.InputError, result.Status);
        Assert.True(sent.Length < 2000);
    }

    private static async Task<(string Path, byte[] Data, string Etag)> BlobAsync(int size)
    {
        var dir = TempDir.Create("vsend");
        var data = new byte[size];
        Random.Shared.NextBytes(data);
        var path = Path.Combine(dir, "blob");
        await File.WriteAllBytesAsync(path, data);
        return (path, data, Blake3.Hasher.Hash(data).ToString());
    }

    private static async Task<(CopyResult Result, byte[] Sent)> SendAsync(string path, long length, string etag)
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        CopyResult result;
        using (var file = File.OpenHandle(path))
        {
            result = await VerifiedSend.SendAsync(file, length, pipe.Writer, etag, CancellationToken.None);
        }
        await pipe.Writer.CompleteAsync();
        using var ms = new MemoryStream();
        await pipe.Reader.CopyToAsync(ms);
        TempDir.Delete(Path.GetDirectoryName(path)!);
        return (result, ms.ToArray());
    }
}
