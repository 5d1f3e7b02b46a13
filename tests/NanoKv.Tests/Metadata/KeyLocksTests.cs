using NanoKv.Metadata;

namespace NanoKv.Tests.Metadata;

public class KeyLocksTests
{
    /// <summary>Two keys in one stripe are locked together once (a nested pair deadlocked), and the stripe is free after.</summary>
    [Fact]
    public async Task KeysSharingAStripeLockTogetherAndRelease()
    {
        var locks = new KeyLocks();
        var a = "a"u8.ToArray();
        var b = Enumerable.Range(0, 100_000).Select(i => System.Text.Encoding.UTF8.GetBytes($"k{i}")).First(k => KeyLocks.Stripe(k) == KeyLocks.Stripe(a));
        var other = Enumerable.Range(0, 100_000).Select(i => System.Text.Encoding.UTF8.GetBytes($"o{i}")).First(k => KeyLocks.Stripe(k) != KeyLocks.Stripe(a));
        using (await locks.LockAllAsync([a, b, other]).WaitAsync(TimeSpan.FromSeconds(10)))
        {
            var waiting = locks.LockAsync(b);
            Assert.False(waiting.IsCompleted); // held
            var waitingOther = locks.LockAsync(other);
            Assert.False(waitingOther.IsCompleted);
            await Task.Yield();
            Assert.False(waiting.IsCompleted);
            _ = waiting.ContinueWith(t => t.Result.Dispose(), TaskScheduler.Default);
            _ = waitingOther.ContinueWith(t => t.Result.Dispose(), TaskScheduler.Default);
        }
        using (await locks.LockAllAsync([b, a]).WaitAsync(TimeSpan.FromSeconds(10)))
        {
        }
    }
}
