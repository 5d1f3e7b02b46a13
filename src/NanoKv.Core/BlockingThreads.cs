using System.Collections.Concurrent;

namespace NanoKv.Core;

/// <summary>
/// Threads for work that blocks in system calls (a relay's or a handoff's sends wait in poll), kept after use:
/// a thread per read cost its start and a fresh stack each time, and at 1 MiB reads that was a large part of a
/// handoff. A thread is started whenever none is idle (callers bound their own concurrency), and leaves after
/// a minute without work.
/// </summary>
public static class BlockingThreads
{
    private static readonly TimeSpan IdleTimeout = TimeSpan.FromMinutes(1);
    private static readonly BlockingCollection<Action> Work = [];
    private static int _idle;

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
        Work.Add(() =>
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
        // Read after the add: an idle thread that times out later re-checks the queue, so work is never stranded.
        if (Interlocked.CompareExchange(ref _idle, 0, 0) == 0)
        {
            new Thread(Loop) { IsBackground = true, Name = "nanokv-blocking" }.Start();
        }
        return done.Task;
    }

    private static void Loop()
    {
        while (true)
        {
            Interlocked.Increment(ref _idle);
            var got = Work.TryTake(out var work, IdleTimeout);
            Interlocked.Decrement(ref _idle);
            if (!got && !Work.TryTake(out work))
            {
                return;
            }
            work!();
        }
    }
}
