namespace NanoKv.Core;

/// <summary>
/// Monotonic write versions (Unix microseconds, bumped past the last one issued). Volumes stamp blobs and
/// tombstones with them, so a rebuild can tell which of a blob and a tombstone came last.
/// </summary>
public sealed class VersionClock
{
    private long _last;

    public VersionClock(long floor = 0) => _last = floor;

    public long Next()
    {
        while (true)
        {
            var last = Interlocked.Read(ref _last);
            var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000;
            var next = Math.Max(now, last + 1);
            if (Interlocked.CompareExchange(ref _last, next, last) == last)
            {
                return next;
            }
        }
    }

    /// <summary>Makes later versions exceed one seen elsewhere (e.g. loaded from metadata after a restart).</summary>
    public void Observe(long version)
    {
        long last;
        while ((last = Interlocked.Read(ref _last)) < version && Interlocked.CompareExchange(ref _last, version, last) != last)
        {
        }
    }
}
