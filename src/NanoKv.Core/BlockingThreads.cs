namespace NanoKv.Core;

/// <summary>
/// Threads for work that blocks in system calls (a relay's or a handoff's sends wait in poll), kept after use:
/// a thread per read cost its start and a fresh stack each time, and at 1 MiB reads that was a large part of a
/// handoff. Every queued item has a thread of its own (callers bound their own concurrency): an item must never
/// wait behind blocking work, which may itself wait for it (a coordinator's relay waits for the volume's handoff
/// to send, and in one process both run here). A thread leaves after a minute without work.
/// </summary>
public static class BlockingThreads
{
    private static readonly TimeSpan IdleTimeout = TimeSpan.FromMinutes(1);
    // A queue under a monitor, not a BlockingCollection: its waits spin first (a SemaphoreSlim), and the threads, idle
    // between reads, spent their time in sched_yield (~400 a second each, measured).
    private static readonly Queue<Action> Work = new();
    private static readonly object Gate = new();

    // Threads waiting for work minus items queued: each item claims a waiting thread, or starts one when none is
    // left unclaimed. (A flag "some thread is idle" let two items claim the same thread and strand the second.)
    private static int _unclaimed;

    /// <summary>Threads started so far (for tests).</summary>
    public static int Started => Volatile.Read(ref _started);

    private static int _started;

    /// <summary>Runs work on a blocking thread; the task ends when it has.</summary>
    public static Task Run(Action work) => Run(() =>
    {
        work();
        return true;
    });

    /// <summary>Runs work on a blocking thread; the task ends with its result or exception.</summary>
    public static Task<T> Run<T>(Func<T> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (Gate)
        {
            Work.Enqueue(() =>
            {
                try
                {
                    done.SetResult(work());
                }
                catch (Exception ex)
                {
                    done.SetException(ex);
                }
            });
            Monitor.Pulse(Gate);
        }
        if (Interlocked.Decrement(ref _unclaimed) < 0)
        {
            Interlocked.Increment(ref _started);
            new Thread(Loop) { IsBackground = true, Name = "nanokv-blocking" }.Start();
        }
        return done.Task;
    }

    private static void Loop()
    {
        while (true)
        {
            Interlocked.Increment(ref _unclaimed);
            Action? work;
            lock (Gate)
            {
                while (!Work.TryDequeue(out work))
                {
                    if (Monitor.Wait(Gate, IdleTimeout))
                    {
                        continue;
                    }
                    // Idle for a minute: leave, unless an item queued meanwhile counts on this thread.
                    var unclaimed = Volatile.Read(ref _unclaimed);
                    if (unclaimed > 0 && Interlocked.CompareExchange(ref _unclaimed, unclaimed - 1, unclaimed) == unclaimed)
                    {
                        return;
                    }
                }
            }
            work();
        }
    }
}
