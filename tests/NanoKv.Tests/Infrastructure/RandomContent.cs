using System.Net;
using System.Security.Cryptography;

namespace NanoKv.Tests.Infrastructure;

/// <summary>
/// A request body of pseudo-random bytes generated on the fly: sized (Content-Length) or chunked,
/// optionally paced, optionally calling back once some bytes have gone out.
/// </summary>
public sealed class RandomContent(long length, bool chunked = false, int chunk = 64 * 1024) : HttpContent
{
    public TimeSpan Pause { get; init; }

    public long CallbackAfter { get; init; } = long.MaxValue;

    public Action? OnReached { get; init; }

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
    {
        var buf = RandomNumberGenerator.GetBytes(chunk);
        long sent = 0;
        var fired = false;
        while (sent < length)
        {
            var n = (int)Math.Min(chunk, length - sent);
            await stream.WriteAsync(buf.AsMemory(0, n));
            await stream.FlushAsync();
            sent += n;
            if (!fired && sent >= CallbackAfter)
            {
                fired = true;
                OnReached?.Invoke();
                await Task.Delay(200);
            }
            if (Pause > TimeSpan.Zero)
            {
                await Task.Delay(Pause);
            }
        }
    }

    protected override bool TryComputeLength(out long len)
    {
        len = length;
        return !chunked;
    }
}
