using System.Net;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests;

/// <summary>Large objects through real processes: bodies stream, memory stays flat. Part of the regular suite.</summary>
public class HeavyStreamingTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const long Size = 300L * 1024 * 1024;
    private const long RssLimit = 150L * 1024 * 1024;

    [Fact]
    public async Task A300MbObjectStreamsThroughPutAndGetInFlatMemory()
    {
        var root = TempDir.Create("heavy");
        var processes = new List<ChildProcess>();
        try
        {
            var volumeUrls = new List<string>();
            for (var i = 0; i < 3; i++)
            {
                var port = TestCluster.FreePort();
                var v = await ChildProcess.StartAsync("volume", port, ["--data", Path.Combine(root, $"vol{i}"), "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
                processes.Add(v);
                volumeUrls.Add(v.Url);
            }
            var coordPort = TestCluster.FreePort();
            var coord = await ChildProcess.StartAsync("coord", coordPort,
                ["serve", "--db", Path.Combine(root, "index"), "--replicas", "3", "--volumes", string.Join(',', volumeUrls), "--port", coordPort.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            processes.Add(coord);

            // Anonymous memory is sampled while the object moves (the kernel keeps no peak of it); VmHWM would
            // also count the volume's pinned page cache of the verified blob, a separate fixed budget.
            var peakAnon = new long[processes.Count];
            using var sampling = new CancellationTokenSource();
            var sampler = Task.Run(async () =>
            {
                while (!sampling.IsCancellationRequested)
                {
                    for (var i = 0; i < processes.Count; i++)
                    {
                        peakAnon[i] = Math.Max(peakAnon[i], processes[i].AnonRssBytes());
                    }
                    await Task.Delay(20, CancellationToken.None);
                }
            });
            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(10) };
            var content = new StreamContent(new PatternStream(Size));
            content.Headers.ContentLength = Size;
            using var put = await http.PutAsync($"{coord.Url}/big%2Fobject", content);
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
            var etag = put.Headers.ETag!.Tag.Trim('"');
            Assert.Equal(await PatternStream.EtagAsync(Size), etag);

            foreach (var proxy in new[] { false, true })
            {
                using var get = await http.GetAsync($"{coord.Url}/big%2Fobject" + (proxy ? "?proxy=1" : ""), HttpCompletionOption.ResponseHeadersRead);
                Assert.Equal(HttpStatusCode.OK, get.StatusCode);
                await using var body = await get.Content.ReadAsStreamAsync();
                var r = await StreamCopier.CopyAsync(body, Stream.Null, CancellationToken.None);
                Assert.Equal(Size, r.Bytes);
                Assert.Equal(etag, r.Etag);
            }

            await sampling.CancelAsync();
            await sampler.WaitAsync(TimeSpan.FromSeconds(10));
            for (var i = 0; i < processes.Count; i++)
            {
                var p = processes[i];
                output.WriteLine($"{p.Url}: peak anonymous RSS {peakAnon[i] / 1024 / 1024} MB, VmHWM {p.PeakRssBytes() / 1024 / 1024} MB");
                Assert.True(peakAnon[i] > 0, $"{p.Url}: no RssAnon sample");
                Assert.True(peakAnon[i] < RssLimit, $"{p.Url} peak anonymous RSS {peakAnon[i] / 1024 / 1024} MB");
            }
        }
        finally
        {
            foreach (var p in processes)
            {
                p.Dispose();
            }
            TempDir.Delete(root);
        }
    }

    /// <summary>A deterministic pseudo-random stream of a given length that never exists whole in memory.</summary>
    private sealed class PatternStream(long length) : Stream
    {
        private long _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => length;

        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public static async Task<string> EtagAsync(long length) =>
            (await StreamCopier.CopyAsync(new PatternStream(length), Stream.Null, CancellationToken.None)).Etag;

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var n = (int)Math.Min(buffer.Length, length - _position);
            for (var i = 0; i < n; i++)
            {
                var p = _position + i;
                buffer[i] = (byte)((p * 2654435761L) >> 13);
            }
            _position += n;
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult(Read(buffer.Span));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            Task.FromResult(Read(buffer.AsSpan(offset, count)));

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
