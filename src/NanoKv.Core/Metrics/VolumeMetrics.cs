using Prometheus;

namespace NanoKv.Core.Metrics;

/// <summary>Volume series: integrity failures and the disk's fill level.</summary>
public sealed class VolumeMetrics : ServerMetrics
{
    /// <summary>Counting blobs walks the folder tree; once per this interval at most, however often Prometheus scrapes.</summary>
    private static readonly TimeSpan CountInterval = TimeSpan.FromSeconds(15);

    private long _countedAt = long.MinValue;

    public VolumeMetrics()
    {
        VerifiedReadFailures = Factory.CreateCounter("nanokv_verified_read_failures_total", "full-body reads whose bytes did not match the stored BLAKE3 (transfer cut)");
        Quarantines = Factory.CreateCounter("nanokv_quarantined_blobs_total", "blobs moved out of blobs/ after failing their checksum");
        Capacity = Factory.CreateGauge("nanokv_volume_capacity_bytes", "filesystem size of the data folder");
        Free = Factory.CreateGauge("nanokv_volume_free_bytes", "free bytes on the data folder's filesystem");
        Blobs = Factory.CreateGauge("nanokv_volume_blobs", "committed blobs on this volume (recounted at most every 15 s)");
        SendfileReads = Factory.CreateCounter("nanokv_sendfile_reads_total", "GETs on the read port: pinned (sent from verified locked pages), mapped (sent from a verified blob whose pages are all still mapped, unlocked), verified (hashed, then sent and pinned), streamed (hashed and sent in locked windows, then kept mapped), redirected (to the main port), handoff (a coordinator on this host handed over its client's connection: sent from a verified pin)", ["outcome"]);
        UploadWrites = Factory.CreateCounter("nanokv_volume_upload_writes_total", "upload bodies written, by path: cached (through the page cache; the replica reads go to first), direct (around it, O_DIRECT), directrefused (around it was asked, the filesystem refused)", ["path"]);
        CommitPins = Factory.CreateCounter("nanokv_commit_pins_total", "committed blobs from 8 MiB verified ahead of their first GET: pinned (hashed and kept as a verified pin), already (pinned before), skipped (not in the page cache, over the pin budget), mismatch (left to the read path)", ["outcome"]);
        BlobBytes = Factory.CreateGauge("nanokv_volume_blob_bytes", "bytes of committed blobs on this volume (recounted at most every 15 s)");
    }

    public Counter VerifiedReadFailures { get; }

    public Counter Quarantines { get; }

    public Counter SendfileReads { get; }

    public Counter UploadWrites { get; }

    public Counter CommitPins { get; }

    public Gauge Capacity { get; }

    public Gauge Free { get; }

    public Gauge Blobs { get; }

    public Gauge BlobBytes { get; }

    /// <summary>Reads the disk figures on each scrape; blob counts from a walk of <paramref name="blobsDir"/>.</summary>
    public void ObserveDisk(string blobsDir, Func<long> capacity, Func<long> free)
    {
        OnScrape(() =>
        {
            Capacity.Set(capacity());
            Free.Set(free());
            var now = Environment.TickCount64;
            if (now - Interlocked.Read(ref _countedAt) < CountInterval.TotalMilliseconds)
            {
                return;
            }
            Interlocked.Exchange(ref _countedAt, now);
            long count = 0, bytes = 0;
            if (Directory.Exists(blobsDir))
            {
                foreach (var f in new DirectoryInfo(blobsDir).EnumerateFiles("*", new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true }))
                {
                    // Same filter as BlobStore.List: ".key" sidecars of hashed names and in-flight temp files are not blobs.
                    if (f.Name.EndsWith(".key", StringComparison.Ordinal) || f.Name.Contains(".tmp-", StringComparison.Ordinal))
                    {
                        continue;
                    }
                    count++;
                    bytes += f.Length;
                }
            }
            Blobs.Set(count);
            BlobBytes.Set(bytes);
        });
    }
}
