using System.Buffers;
using System.Net;
using System.Threading.Channels;
using NanoKv.Core.Hashing;

namespace NanoKv.Core;

/// <summary>
/// Streams one source to N HTTP request bodies at once, so a PUT writes every replica in parallel and the
/// source is read and hashed once. Each chunk is shared by reference (no per-replica copy) and returned to
/// the pool when the last replica has sent it; bounded channels give backpressure to the slowest replica.
/// </summary>
public sealed class Broadcast
{
    // Two chunks per replica keep the pipe full while bounding memory: 16 PUTs × 3 replicas × 2 × 256 KiB ≈ 24 MiB.
    private const int ChunksInFlight = 2;

    /// <summary>SocketsHttpHandler's Expect100ErrorSendThreshold.</summary>
    private const long SmallBodyBytes = 1024;
    private readonly Channel<Chunk>[] _channels;
    private readonly TimeSpan _idleTimeout;

    /// <param name="targets">number of request bodies to feed</param>
    /// <param name="idleTimeout">a target that accepts no bytes for this long fails (a stalled volume must not hang the PUT)</param>
    public Broadcast(int targets, TimeSpan idleTimeout)
    {
        _idleTimeout = idleTimeout;
        _channels = new Channel<Chunk>[targets];
        for (var i = 0; i < targets; i++)
        {
            _channels[i] = Channel.CreateBounded<Chunk>(new BoundedChannelOptions(ChunksInFlight) { SingleReader = true, SingleWriter = true });
        }
    }

    /// <summary>
    /// The request body for target i; length is sent as Content-Length when known, else chunked. A target
    /// whose body never <see cref="TargetContent.Started"/> took no chunk, so a new content for the same
    /// slot (another node) can still send the whole body.
    /// </summary>
    /// <param name="onStart">runs when HttpClient starts sending this body (the node accepted it)</param>
    public TargetContent ContentFor(int i, long? length, Action? onStart = null) => new(this, i, length, onStart);

    /// <summary>Marks target i failed so the pump stops instead of waiting on it forever.</summary>
    public void Fail(int i, Exception error)
    {
        _channels[i].Writer.TryComplete(error);
        Drain(i);
    }

    /// <summary>
    /// Reads src to the end and hands each chunk to every target; OutputError when any target failed. Each
    /// chunk is read straight into its own pooled buffer and hashed there (no copy per chunk). With
    /// hash=false the result's Etag is empty: the caller takes the targets' own hashes instead. A source that
    /// is an <see cref="IChunkObserver"/> sees each chunk too, and holds it until it is done with it.
    /// </summary>
    public async Task<CopyResult> PumpAsync(Stream src, long maxBytes, CancellationToken ct, bool hash = true)
    {
        var result = await PumpChunksAsync(src, maxBytes, hash, ct);
        foreach (var ch in _channels)
        {
            if (result.Ok)
            {
                ch.Writer.TryComplete();
            }
            else
            {
                ch.Writer.TryComplete(result.Error ?? new OperationCanceledException());
            }
        }
        return result;
    }

    private async Task<CopyResult> PumpChunksAsync(Stream src, long maxBytes, bool hash, CancellationToken ct)
    {
        using var hasher = hash ? ContentHasher.New() : null;
        var observer = src as IChunkObserver is { } o && o.ObserveChunks() ? o : null;
        long total = 0;
        while (true)
        {
            var buffer = ArrayPool<byte>.Shared.Rent(StreamCopier.BufferSize);
            int filled;
            try
            {
                filled = await StreamCopier.FillAsync(src, buffer.AsMemory(0, StreamCopier.BufferSize), ct);
            }
            catch (OperationCanceledException ex)
            {
                ArrayPool<byte>.Shared.Return(buffer);
                return new CopyResult(total, "", CopyStatus.Canceled, ex);
            }
            catch (Exception ex)
            {
                ArrayPool<byte>.Shared.Return(buffer);
                return new CopyResult(total, "", CopyStatus.InputError, ex);
            }
            if (filled == 0)
            {
                ArrayPool<byte>.Shared.Return(buffer);
                return new CopyResult(total, hasher?.FinalizeHex() ?? "", CopyStatus.Ok, null);
            }
            total += filled;
            if (total > maxBytes)
            {
                ArrayPool<byte>.Shared.Return(buffer);
                return new CopyResult(total, "", CopyStatus.InputError, new InvalidDataException($"body is longer than {maxBytes} bytes"));
            }
            hasher?.Update(buffer.AsSpan(0, filled));
            var chunk = new Chunk(buffer, filled, _channels.Length + (observer is null ? 0 : 1));
            if (observer is not null)
            {
                await observer.ObserveAsync(buffer, filled, chunk.Release);
            }
            try
            {
                await SendAsync(chunk, ct);
            }
            catch (OperationCanceledException ex)
            {
                return new CopyResult(total, "", CopyStatus.Canceled, ex);
            }
            catch (Exception ex)
            {
                return new CopyResult(total, "", CopyStatus.OutputError, ex);
            }
        }
    }

    private async ValueTask SendAsync(Chunk chunk, CancellationToken ct)
    {
        for (var i = 0; i < _channels.Length; i++)
        {
            var writer = _channels[i].Writer;
            if (writer.TryWrite(chunk))
            {
                continue;
            }
            try
            {
                await writer.WriteAsync(chunk, ct);
            }
            catch
            {
                for (var j = i; j < _channels.Length; j++)
                {
                    chunk.Release();
                }
                throw;
            }
        }
    }

    private void Drain(int i)
    {
        while (_channels[i].Reader.TryRead(out var c))
        {
            c.Release();
        }
    }

    private sealed class Chunk
    {
        private readonly byte[] _buffer;
        private int _refs;

        /// <summary>Takes ownership of a pooled buffer; it goes back to the pool after the last Release.</summary>
        public Chunk(byte[] pooled, int length, int refs)
        {
            _buffer = pooled;
            Length = length;
            _refs = refs;
        }

        public int Length { get; }

        public ReadOnlyMemory<byte> Memory => _buffer.AsMemory(0, Length);

        public void Release()
        {
            if (Interlocked.Decrement(ref _refs) == 0)
            {
                ArrayPool<byte>.Shared.Return(_buffer);
            }
        }
    }

    /// <summary>One target's request body; it reads that target's channel.</summary>
    public sealed class TargetContent(Broadcast owner, int index, long? length, Action? onStart) : HttpContent
    {
        private volatile bool _started;

        /// <summary>True once HttpClient began sending the body (a chunk may have left).</summary>
        public bool Started => _started;

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            _started = true;
            onStart?.Invoke();
            var reader = owner._channels[index].Reader;
            try
            {
                while (await reader.WaitToReadAsync(cancellationToken))
                {
                    while (reader.TryRead(out var chunk))
                    {
                        try
                        {
                            // Socket writes do not observe per-write cancellation; WaitAsync bounds the wait and
                            // the exception makes HttpClient tear the connection down.
                            await stream.WriteAsync(chunk.Memory, cancellationToken).AsTask().WaitAsync(owner._idleTimeout, cancellationToken);
                        }
                        finally
                        {
                            chunk.Release();
                        }
                    }
                }
            }
            catch (Exception ex)
            {
                owner.Fail(index, ex);
                throw;
            }
        }

        protected override bool TryComputeLength(out long len)
        {
            // HttpClient sends a body of a known length up to 1 KiB even when the server refuses it before
            // 100-continue; chunked, it sends none, so a refused small body can still go to another node.
            len = length ?? 0;
            return length > SmallBodyBytes;
        }
    }
}
