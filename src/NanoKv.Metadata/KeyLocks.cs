namespace NanoKv.Metadata;

/// <summary>
/// Striped in-process per-key locks (256 stripes, one semaphore each). A caller that needs several keys takes
/// them in one <see cref="LockAllAsync"/>: their distinct stripes in ascending order. Nesting two LockAsync
/// calls instead deadlocks when both keys share a stripe (1 in 256: a CompleteMultipartUpload did, holding its
/// upload's stripe and waiting for its object's), and two nesting callers could each hold what the other wants.
/// </summary>
public sealed class KeyLocks
{
    private const int Stripes = 256;
    private readonly SemaphoreSlim[] _stripes = [.. Enumerable.Range(0, Stripes).Select(_ => new SemaphoreSlim(1, 1))];

    public async Task<IDisposable> LockAsync(byte[] key)
    {
        var s = _stripes[Stripe(key)];
        await s.WaitAsync();
        return new Releaser([s]);
    }

    /// <summary>Locks every key's stripe, each once, in stripe order; disposing releases them all.</summary>
    public async Task<IDisposable> LockAllAsync(IReadOnlyList<byte[]> keys)
    {
        var taken = new List<SemaphoreSlim>(keys.Count);
        try
        {
            foreach (var i in keys.Select(k => Stripe(k)).Distinct().Order())
            {
                await _stripes[i].WaitAsync();
                taken.Add(_stripes[i]);
            }
        }
        catch
        {
            new Releaser(taken).Dispose();
            throw;
        }
        return new Releaser(taken);
    }

    /// <summary>Which stripe guards key (for tests that need two keys in one stripe).</summary>
    public static int Stripe(byte[] key) => Stripe(key, Stripes);

    /// <summary>The key's stripe among count (also the metadata store's compare-and-swap stripes).</summary>
    internal static int Stripe(ReadOnlySpan<byte> key, int count)
    {
        var hash = 17;
        foreach (var b in key)
        {
            hash = (hash * 31) + b;
        }
        return (hash & 0x7fffffff) % count;
    }

    private sealed class Releaser(IReadOnlyList<SemaphoreSlim> held) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                foreach (var s in held)
                {
                    s.Release();
                }
            }
        }
    }
}
