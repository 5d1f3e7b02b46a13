using System.Buffers.Binary;

namespace NanoKv.S3.Payload;

/// <summary>
/// One body's MD5 computed by <see cref="Md5Lanes"/>: appended bytes are copied into a staging buffer, and
/// each full buffer is hashed on the lanes thread while the next one fills; a pump's chunks are lent instead
/// (<see cref="LendAsync"/>), up to four queued at once. The body's jobs form one chain, stepped in order.
/// </summary>
public sealed class LaneMd5 : IDisposable
{
    // Lent buffers queued at once per body: chunks that arrive together need not wait for each other, and the
    // pump's memory held for hashing stays bounded.
    private const int MaxLent = 4;

    private readonly Md5Lanes.Chain _chain = new([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]);
    private readonly Queue<Md5Lanes.Job> _lent = new();
    private byte[] _fill = Md5Lanes.RentBuffer();
    private int _filled;
    private long _length;
    private Md5Lanes.Job? _inFlight; // the last job queued (the chain steps them in order)
    private byte[]? _inFlightBuffer;
    private bool _finished;

    /// <summary>Copies data in before returning (the caller may reuse its buffer at once); waits only when a full buffer must be queued.</summary>
    public ValueTask AppendAsync(ReadOnlyMemory<byte> data)
    {
        ObjectDisposedException.ThrowIf(_finished, this);
        _length += data.Length;
        if (_filled + data.Length < _fill.Length)
        {
            data.Span.CopyTo(_fill.AsSpan(_filled));
            _filled += data.Length;
            return ValueTask.CompletedTask;
        }
        return FillAsync(data);
    }

    private async ValueTask FillAsync(ReadOnlyMemory<byte> data)
    {
        while (!data.IsEmpty)
        {
            var n = Math.Min(_fill.Length - _filled, data.Length);
            data.Span[..n].CopyTo(_fill.AsSpan(_filled));
            _filled += n;
            data = data[n..];
            if (_filled == _fill.Length)
            {
                await QueueAsync();
            }
        }
    }

    /// <summary>
    /// Hashes the caller's buffer in place when it continues the body at a block boundary (whole blocks, nothing
    /// staged): queued behind the body's previous blocks, and release runs once the lanes are done reading it.
    /// Otherwise its bytes are copied in as by <see cref="AppendAsync"/> and released at once.
    /// </summary>
    public async ValueTask LendAsync(byte[] buffer, int length, Action release)
    {
        if (_finished || _filled != 0 || length % 64 != 0 || length == 0)
        {
            try
            {
                if (!_finished)
                {
                    await AppendAsync(buffer.AsMemory(0, length));
                }
            }
            finally
            {
                release();
            }
            return;
        }
        while (_lent.TryPeek(out var oldest) && (oldest.Done.Task.IsCompleted || _lent.Count >= MaxLent))
        {
            _ = _lent.Dequeue();
            if (!oldest.Done.Task.IsCompleted)
            {
                Md5Lanes.Hurry(_chain);
                await oldest.Done.Task;
            }
        }
        _length += length;
        Lent++;
        var job = Md5Lanes.Submit(_chain, buffer, length / 64);
        _lent.Enqueue(job);
        _inFlight = job;
        _ = job.Done.Task.ContinueWith(_ => release(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>Buffers hashed in place (<see cref="LendAsync"/>), not copied.</summary>
    public int Lent { get; private set; }

    /// <summary>Queues the whole blocks filled so far; the tail (under 64 bytes) moves to the next buffer.</summary>
    private async ValueTask QueueAsync()
    {
        await InFlightDoneAsync();
        var next = _inFlightBuffer ?? Md5Lanes.RentBuffer();
        var whole = _filled / 64 * 64;
        _fill.AsSpan(whole, _filled - whole).CopyTo(next);
        _inFlight = whole > 0 ? Md5Lanes.Submit(_chain, _fill, whole / 64) : null;
        (_inFlightBuffer, _fill, _filled) = (_fill, next, _filled - whole);
    }

    /// <summary>
    /// Waits for the body's queued blocks, first telling the lanes not to hold them back for company: a job waits
    /// for more lanes to fill only while nobody waits for it (its body is still receiving the next buffer).
    /// </summary>
    private async ValueTask InFlightDoneAsync()
    {
        if (_inFlight is { } job)
        {
            if (!job.Done.Task.IsCompleted)
            {
                Md5Lanes.Hurry(_chain);
                await job.Done.Task;
            }
        }
    }

    /// <summary>Pads, waits for the last blocks (hurrying them: the digest is wanted now) and returns the 16-byte digest.</summary>
    public async ValueTask<byte[]> FinishAsync()
    {
        var bits = (ulong)_length * 8;
        var pad = new byte[(_filled % 64 < 56 ? 64 : 128) - (_filled % 64)];
        pad[0] = 0x80;
        BinaryPrimitives.WriteUInt64LittleEndian(pad.AsSpan(pad.Length - 8), bits);
        await AppendAsync(pad);
        await QueueAsync();
        await InFlightDoneAsync();
        _inFlight = null;
        var digest = new byte[16];
        for (var w = 0; w < 4; w++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(digest.AsSpan(w * 4), _chain.State[w]);
        }
        Dispose();
        return digest;
    }

    public void Dispose()
    {
        if (_finished)
        {
            return;
        }
        _finished = true;
        Md5Lanes.ReturnBuffer(_fill);
        if (_inFlightBuffer is { } busy)
        {
            // The lanes thread may still read it: back to the pool only once its blocks are done.
            if (_inFlight?.Done.Task is { IsCompleted: false } pending)
            {
                _ = pending.ContinueWith(_ => Md5Lanes.ReturnBuffer(busy), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
            else
            {
                Md5Lanes.ReturnBuffer(busy);
            }
        }
    }
}
