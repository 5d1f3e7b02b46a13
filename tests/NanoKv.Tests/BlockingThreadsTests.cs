using NanoKv.Core;

namespace NanoKv.Tests;

public class BlockingThreadsTests
{
    /// <summary>
    /// Items that wait for each other (as a coordinator's relay waits for the volume's handoff, both on these
    /// threads in one process) each need a thread of their own, also when idle threads are left from earlier work:
    /// the old "is any thread idle" check let several items claim one idle thread and stranded the rest.
    /// </summary>
    [Fact]
    public async Task ItemsQueuedTogetherEachGetAThreadEvenWithIdleThreadsAround()
    {
        for (var round = 0; round < 20; round++)
        {
            // Leave a few idle threads behind, then queue more items than there are idle threads, back to back.
            await RunTogetherAsync(3);
            Assert.True(await RunTogetherAsync(8), $"round {round}: an item waited behind blocking work ({BlockingThreads.Started} threads started)");
        }
    }

    private static async Task<bool> RunTogetherAsync(int count)
    {
        using var all = new Barrier(count);
        var items = Enumerable.Range(0, count).Select(_ => BlockingThreads.Run(() => all.SignalAndWait(TimeSpan.FromSeconds(10)))).ToArray();
        var met = await Task.WhenAll(items).WaitAsync(TimeSpan.FromSeconds(30));
        return met.All(m => m);
    }
}
