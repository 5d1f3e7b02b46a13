using Microsoft.Extensions.Logging;
using NanoKv.Metadata;

namespace NanoKv.Coordinator;

/// <summary>Who runs the cluster's live ops job, until when (Unix ms): the "ops" record of <see cref="RecordTable.Leases"/>.</summary>
public sealed record JobLeaseRecord(string Holder, string HolderUrl, string JobId, string Command, long ExpiresMs);

/// <summary>
/// One mutating live ops job (repair, rebalance, gc, rebuild) at a time across every coordinator sharing the
/// metadata: the job takes a lease record by compare-and-swap, renews it while it runs, and deletes it when it
/// ends. A coordinator that dies mid-job leaves a lease that lapses after <see cref="Duration"/>.
/// </summary>
public sealed class ClusterJobLease(IMetaStore store, string coordinatorId, Func<string> coordinatorUrl, ILogger logger)
{
    private static readonly byte[] Key = "ops"u8.ToArray();

    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(30);

    private static long NowMs => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    /// <summary>Takes the lease for the job, or returns the live lease of whoever holds it.</summary>
    public (JobLeaseRecord? Mine, JobLeaseRecord? Holder) TryAcquire(string jobId, string command)
    {
        while (true)
        {
            var current = store.GetRecord<JobLeaseRecord>(RecordTable.Leases, Key);
            if (current is not null && current.ExpiresMs > NowMs)
            {
                return (null, current);
            }
            var mine = new JobLeaseRecord(coordinatorId, coordinatorUrl(), jobId, command, NowMs + (long)Duration.TotalMilliseconds);
            if (store.CompareAndSwapRecord(RecordTable.Leases, Key, current, mine))
            {
                return (mine, null);
            }
        }
    }

    /// <summary>Renews the lease until the job ends, then releases it.</summary>
    public async Task HoldAsync(JobLeaseRecord lease, Task job)
    {
        while (!job.IsCompleted)
        {
            await Task.WhenAny(job, Task.Delay(Duration / 3));
            if (job.IsCompleted)
            {
                break;
            }
            try
            {
                var renewed = lease with { ExpiresMs = NowMs + (long)Duration.TotalMilliseconds };
                if (!store.CompareAndSwapRecord(RecordTable.Leases, Key, lease, renewed))
                {
                    logger.LogWarning("ops job {Id} lost its cluster-wide lease (it lapsed and was taken)", lease.JobId);
                    return;
                }
                lease = renewed;
            }
            catch (MetaStoreUnavailableException ex)
            {
                logger.LogWarning("could not renew the lease of ops job {Id}: {Error}", lease.JobId, ex.Message);
            }
        }
        try
        {
            store.CompareAndSwapRecord<JobLeaseRecord>(RecordTable.Leases, Key, lease, null);
        }
        catch (MetaStoreUnavailableException ex)
        {
            logger.LogWarning("could not release the lease of ops job {Id} (it lapses by itself): {Error}", lease.JobId, ex.Message);
        }
    }

    public static string Describe(JobLeaseRecord holder) =>
        $"ops job {holder.JobId} ({holder.Command}) is running on coordinator {holder.Holder} ({holder.HolderUrl}); "
        + $"one repair/rebalance/gc/rebuild runs at a time cluster-wide; its lease ends {DateTimeOffset.FromUnixTimeMilliseconds(holder.ExpiresMs):O} unless renewed";
}
