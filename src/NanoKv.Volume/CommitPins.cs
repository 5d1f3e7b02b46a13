using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using NanoKv.Core.Hashing;
using NanoKv.Core.Metrics;

namespace NanoKv.Volume;

/// <summary>
/// Verifies a freshly committed blob before its first GET: maps and locks it, hashes it against its stored
/// BLAKE3 and keeps it as a verified pin — exactly what a first read does, moved off the read path. The commit
/// of the replica that GETs go to leaves its pages in the page cache (the others are written around it and are
/// not pinnable, so they are skipped), and the PUT phase has CPU to spare where a GET burst has none: at 16 MiB
/// one first read in seven was hashed, at 1 GiB the first read of each key. One blob at a time on one thread;
/// a burst beyond the queue is left to the read path. A mismatch is left to the read path too (it hashes the
/// same pages, quarantines and cuts), so this never acts on a blob by itself.
/// </summary>
public sealed class CommitPins : IAsyncDisposable
{
    /// <summary>Smaller blobs are not worth it: their first read hashes in well under a millisecond.</summary>
    public const long From = 8L * 1024 * 1024;

    private const int QueueLength = 64;

    private readonly VerifiedPins _pins;
    private readonly VolumeMetrics _metrics;
    private readonly ILogger _logger;
    private readonly Channel<string> _queue = Channel.CreateBounded<string>(new BoundedChannelOptions(QueueLength)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = true,
    });
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _worker;

    public CommitPins(VerifiedPins pins, VolumeMetrics metrics, ILogger logger)
    {
        (_pins, _metrics, _logger) = (pins, metrics, logger);
        _worker = Task.Run(() => RunAsync(_stop.Token), CancellationToken.None);
    }

    /// <summary>Queues the blob just committed at path (of size bytes); false when it is not queued.</summary>
    public bool Offer(string path, long size) => size >= From && _queue.Writer.TryWrite(path);

    private async Task RunAsync(CancellationToken ct)
    {
        try
        {
            await foreach (var path in _queue.Reader.ReadAllAsync(ct))
            {
                try
                {
                    _metrics.CommitPins.WithLabels(PinOne(path)).Inc();
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // Best effort: the read path verifies the blob as before; the worker must outlive any one blob.
                    _logger.LogDebug("pinning {Path} after its commit failed: {Error}", path, ex.Message);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private string PinOne(string path)
    {
        using (var held = _pins.TryAcquire(path))
        {
            if (held is not null)
            {
                return "already";
            }
        }
        if (BlobStore.StoredEtag(path) is not { } etag)
        {
            return "skipped";
        }
        using var lease = _pins.TryPin(path);
        if (lease is null)
        {
            return "skipped"; // not all in the page cache (written around it), over the budget, or pins off
        }
        using var hasher = ContentHasher.New();
        if (!MappedSend.Matches(hasher, lease.Address, lease.Length, etag) || !VerifiedPins.Unchanged(lease))
        {
            return "mismatch";
        }
        _pins.Commit(lease);
        return "pinned";
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _stop.CancelAsync();
        await _worker;
        _stop.Dispose();
    }
}
