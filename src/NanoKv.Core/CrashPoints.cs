namespace NanoKv.Core;

/// <summary>Named instants of the write path where a test may kill the process or skip a sync call.</summary>
public static class CrashPoint
{
    /// <summary>Volume commit: the blob was renamed into blobs/ (and the folder fsync'd), the commit marker not yet written.</summary>
    public const string VolumeAfterRename = "volume-after-rename";

    /// <summary>Coordinator PUT: every replica answered its commit, the committed metadata not yet written.</summary>
    public const string CoordinatorAfterCommitFanOut = "coord-after-commit-fanout";

    /// <summary>S3 CompleteMultipartUpload: the part list validated, the object record not yet written.</summary>
    public const string CoordinatorBeforeCompleteSwitch = "coord-before-complete-switch";

    /// <summary>S3 CompleteMultipartUpload: the object record written, unused parts and the replaced object not yet deleted.</summary>
    public const string CoordinatorAfterCompleteSwitch = "coord-after-complete-switch";
}

/// <summary>
/// Test-only hooks, read once from the environment so a production process pays one null check:
/// NANOKV_CRASH_AT=NAME kills the process with SIGKILL when it reaches <see cref="CrashPoint"/> NAME
/// (no shutdown code runs, like a power cut for the process); NANOKV_SKIP_SYNC=NAME skips the durability
/// call of that name, so the syscall-level durability test can show it notices a missing fsync.
/// </summary>
public static class CrashPoints
{
    /// <summary>Syncs the skip switch understands (one per durability step the strace test checks).</summary>
    public const string DataFsync = "data-fsync";

    public const string DirFsync = "dir-fsync";

    /// <summary>The coordinator's synced RocksDB write of the committed metadata.</summary>
    public const string WalSync = "wal-sync";

    private static readonly string? CrashAt = Environment.GetEnvironmentVariable("NANOKV_CRASH_AT");
    private static readonly string? SkipSync = Environment.GetEnvironmentVariable("NANOKV_SKIP_SYNC");

    /// <summary>Kills this process right here when NANOKV_CRASH_AT names this point.</summary>
    public static void Hit(string name)
    {
        if (CrashAt is not null && string.Equals(CrashAt, name, StringComparison.Ordinal))
        {
            Console.Error.WriteLine($"crash point {name}: killing process {Environment.ProcessId}");
            Console.Error.Flush();
            System.Diagnostics.Process.GetCurrentProcess().Kill();
            Thread.Sleep(Timeout.Infinite); // SIGKILL is asynchronous: run nothing past the point
        }
    }

    /// <summary>True when NANOKV_SKIP_SYNC names this sync (mutation testing only).</summary>
    public static bool Skipped(string name) => SkipSync is not null && string.Equals(SkipSync, name, StringComparison.Ordinal);

    /// <summary>Runs a durability call unless NANOKV_SKIP_SYNC names it (mutation testing only).</summary>
    public static void Sync(string name, Action sync)
    {
        if (!Skipped(name))
        {
            sync();
        }
    }
}
