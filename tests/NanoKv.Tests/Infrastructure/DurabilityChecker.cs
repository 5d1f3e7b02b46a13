namespace NanoKv.Tests.Infrastructure;

/// <summary>A client call and when the client sent it and heard the answer (epoch seconds, like strace -ttt).</summary>
public sealed record TimedOp(string Kind, string Key, double Start, double End);

/// <summary>
/// Checks, from the system calls of the volumes and the coordinator, the order the durability rule demands for
/// each acknowledged PUT and DELETE (ALICE/CrashMonkey style: what is on disk at the instant of the answer):
/// PUT — data file fsync'd before its rename into blobs/, the folder fsync'd after the rename and before the
/// volume answers the commit, the committed metadata written to the RocksDB WAL after every commit answer and
/// synced before the client's 201. DELETE — the tombstone file fsync'd before its rename, its folder fsync'd
/// before the volume answers, the tombstoned metadata synced before the client's 204. Ops must be sequential
/// (each one's calls are found inside its client window).
/// </summary>
public sealed class DurabilityChecker(IReadOnlyDictionary<string, List<Syscall>> volumes, List<Syscall> coordinator)
{
    public List<string> Violations { get; } = [];

    /// <summary>How many ordering facts were checked (so a run that found nothing to check cannot pass).</summary>
    public int Checks { get; private set; }

    public DurabilityChecker Check(IEnumerable<TimedOp> ops)
    {
        foreach (var op in ops)
        {
            // strace stamps a call when it enters: after the client sent its request, before the client heard the answer.
            var window = (op.Start, op.End);
            // The answer is searched with 50 ms of slack after the client's end: a 204 carries no key to tell it
            // apart, and one such answer was once missed at the window's edge on a loaded machine.
            var answer = coordinator.FirstOrDefault(c => c.IsSend && In(c, (op.Start, op.End + 0.05)) && (op.Kind == "PUT"
                ? c.Args.Contains("HTTP/1.1 201", StringComparison.Ordinal) && c.Args.Contains($"key\\\":\\\"{op.Key}\\\"", StringComparison.Ordinal)
                : c.Args.Contains("HTTP/1.1 204", StringComparison.Ordinal)));
            if (answer is null)
            {
                Fail(op, $"no {(op.Kind == "PUT" ? 201 : 204)} sent by the coordinator inside the client's window");
                continue;
            }
            var volumeAnswers = new List<Syscall>();
            foreach (var (name, calls) in volumes)
            {
                var a = op.Kind == "PUT" ? CheckPutOnVolume(op, name, calls, window) : CheckDeleteOnVolume(op, name, calls, window);
                if (a is not null)
                {
                    volumeAnswers.Add(a);
                    Expect(a.End <= answer.Start, op, $"{name} answered after the coordinator's answer to the client");
                }
            }
            CheckMetadata(op, answer, volumeAnswers, window);
        }
        return this;
    }

    /// <summary>Returns the volume's commit answer, after checking fsync → rename → folder fsync → answer.</summary>
    private Syscall? CheckPutOnVolume(TimedOp op, string vol, List<Syscall> calls, (double Start, double End) window)
    {
        var rename = calls.FirstOrDefault(c => c.IsRename && c.Ok && In(c, window) && c.Strings is [var from, var to]
            && from.EndsWith(".data", StringComparison.Ordinal) && to.Contains("/blobs/", StringComparison.Ordinal) && Path.GetFileName(to) == op.Key);
        if (rename is null)
        {
            Fail(op, $"{vol}: no rename of the data file into blobs/");
            return null;
        }
        var (tmp, dest) = (rename.Strings[0], rename.Strings[1]);
        var uploadId = Path.GetFileNameWithoutExtension(tmp);
        var answer = calls.FirstOrDefault(c => c.IsSend && c.Start >= rename.End && c.Args.Contains("committed\\\":true", StringComparison.Ordinal) && c.Args.Contains(uploadId, StringComparison.Ordinal));
        if (answer is null)
        {
            Fail(op, $"{vol}: no commit answer for upload {uploadId}");
            return null;
        }
        Expect(calls.Any(c => c.IsSync && c.Ok && c.FdPath == tmp && c.End <= rename.Start), op, $"{vol}: data file {Path.GetFileName(tmp)} not fsync'd before its rename into blobs/");
        Expect(calls.Any(c => c.IsSync && c.Ok && c.FdPath == Path.GetDirectoryName(dest) && c.Start >= rename.End && c.End <= answer.Start), op, $"{vol}: folder of {op.Key} not fsync'd after the rename and before the commit was answered");
        return answer;
    }

    /// <summary>Returns the volume's delete answer, after checking tombstone fsync → rename → folder fsync → answer.</summary>
    private Syscall? CheckDeleteOnVolume(TimedOp op, string vol, List<Syscall> calls, (double Start, double End) window)
    {
        var rename = calls.FirstOrDefault(c => c.IsRename && c.Ok && In(c, window) && c.Strings is [_, var to]
            && to.Contains("/tombs/", StringComparison.Ordinal) && Path.GetFileName(to) == op.Key);
        if (rename is null)
        {
            Fail(op, $"{vol}: no tombstone renamed into tombs/");
            return null;
        }
        var (tmp, dest) = (rename.Strings[0], rename.Strings[1]);
        var answer = calls.FirstOrDefault(c => c.IsSend && c.Start >= rename.End && c.Args.Contains("deleted\\\":true", StringComparison.Ordinal));
        if (answer is null)
        {
            Fail(op, $"{vol}: no delete answer after the tombstone");
            return null;
        }
        Expect(calls.Any(c => c.IsSync && c.Ok && c.FdPath == tmp && c.End <= rename.Start), op, $"{vol}: tombstone file not fsync'd before its rename");
        Expect(calls.Any(c => c.IsSync && c.Ok && c.FdPath == Path.GetDirectoryName(dest) && c.Start >= rename.End && c.End <= answer.Start), op, $"{vol}: tombstone folder not fsync'd before the delete was answered");
        return answer;
    }

    /// <summary>The WAL record of the final state is written after every replica answered and synced before the client's answer.</summary>
    private void CheckMetadata(TimedOp op, Syscall answer, List<Syscall> volumeAnswers, (double Start, double End) window)
    {
        var state = op.Kind == "PUT" ? "Committed" : "Tombstoned";
        var wal = coordinator.LastOrDefault(c => c.Name is "write" or "pwrite64" or "writev" && In(c, window) && c.Start <= answer.Start
            && (c.FdPath?.EndsWith(".log", StringComparison.Ordinal) ?? false)
            && c.Args.Contains("m/" + op.Key, StringComparison.Ordinal) && c.Args.Contains($"state\\\":\\\"{state}", StringComparison.Ordinal));
        if (wal is null)
        {
            Fail(op, $"coordinator: no {state} record written to the RocksDB WAL before the answer");
            return;
        }
        if (op.Kind == "PUT")
        {
            Expect(volumeAnswers.All(a => a.End <= wal.Start), op, "coordinator: committed metadata written before every replica answered its commit");
        }
        Expect(coordinator.Any(c => c.IsSync && c.Ok && c.FdPath == wal.FdPath && c.Start >= wal.Start && c.End <= answer.Start), op, $"coordinator: {state} metadata not synced (WAL fdatasync) before the client's answer");
    }

    private static bool In(Syscall c, (double Start, double End) w) => c.Start >= w.Start && c.End <= w.End;

    private void Expect(bool ok, TimedOp op, string what)
    {
        Checks++;
        if (!ok)
        {
            Fail(op, what);
        }
    }

    private void Fail(TimedOp op, string what) => Violations.Add($"{op.Kind} {op.Key}: {what}");
}
