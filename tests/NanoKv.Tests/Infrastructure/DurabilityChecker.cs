namespace NanoKv.Tests.Infrastructure;

/// <summary>A client call and when the client sent it and heard the answer (epoch seconds, like strace -ttt).</summary>
public sealed record TimedOp(string Kind, string Key, double Start, double End);

/// <summary>
/// Checks, from the system calls of the volumes and the coordinator, the order the durability rule demands for
/// each acknowledged PUT and DELETE (ALICE/CrashMonkey style: what is on disk at the instant of the answer):
/// PUT — data file fsync'd before its rename into blobs/, the folder fsync'd after the rename and before the
/// volume answers the commit, the committed metadata written to the RocksDB WAL after every commit answer and
/// synced before the client's 201. DELETE — the tombstone file fsync'd before its rename, its folder fsync'd
/// before the volume answers, the tombstoned metadata synced before the client's 204.
/// <para>
/// Calls are tied to an op by what they carry, never by which one came first: the client's request line and the
/// connection it arrived on (the answer is the next response on that connection), the key in a blob or
/// tombstone path, the upload id in a commit answer and in the WAL record, the tombstone's version in a delete
/// answer. Times only order calls already tied to the op, and only in the direction strace makes safe: a call
/// is stamped when it enters (before it acts) and when it returns (after it acted), and a traced thread waits
/// while its own strace is late — but a peer process can read a send before the sender's return is stamped.
/// So "A before B" across processes compares A's entry with B's entry (the peer saw A's bytes only after A
/// entered, and B entered after the peer saw them), and within a thread A's return with B's entry.
/// </para>
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
            var status = op.Kind == "PUT" ? 201 : 204;
            var (request, answer) = ClientExchange(op);
            if (request is null)
            {
                Fail(op, $"coordinator: the client's request \"{op.Kind} /{op.Key}\" was not seen arriving");
                continue;
            }
            if (answer is null || !answer.Args.Contains($"HTTP/1.1 {status} ", StringComparison.Ordinal))
            {
                Fail(op, $"coordinator: no {status} sent on the client's connection after its request ({answer?.ToString() ?? "no answer"})");
                continue;
            }
            var volumeAnswers = new List<(Syscall Answer, string? UploadId)>();
            foreach (var (name, calls) in volumes)
            {
                var a = op.Kind == "PUT" ? CheckPutOnVolume(op, name, calls, request, answer) : CheckDeleteOnVolume(op, name, calls, request, answer);
                if (a is { } found)
                {
                    volumeAnswers.Add(found);
                    // Entry stamps on both sides: the coordinator can read the volume's answer before strace stamps the send's return.
                    Expect(found.Answer.Start <= answer.Start, op, $"{name} answered after the coordinator's answer to the client");
                }
            }
            CheckMetadata(op, request, answer, volumeAnswers);
        }
        return this;
    }

    /// <summary>
    /// The request "KIND /key HTTP/1.1" as the coordinator received it, and the next response sent on that
    /// connection (HTTP/1.1 answers a connection's requests in order; 1xx interim answers are skipped).
    /// </summary>
    private (Syscall? Request, Syscall? Answer) ClientExchange(TimedOp op)
    {
        var line = $"\"{op.Kind} /{op.Key} HTTP/1.1\\r\\n";
        // Its return is stamped after the bytes arrived, so after the client started; its entry before the client heard yes.
        var request = coordinator.FirstOrDefault(c => c.IsReceive && c.Ok && c.End >= op.Start && c.Start <= op.End && c.Args.Contains(line, StringComparison.Ordinal));
        if (request?.FdPath is not { } socket)
        {
            return (null, null);
        }
        var answer = coordinator.FirstOrDefault(c => c.IsSend && c.FdPath == socket && c.Start >= request.End
            && c.Args.Contains("\"HTTP/1.1 ", StringComparison.Ordinal) && !c.Args.Contains("\"HTTP/1.1 1", StringComparison.Ordinal));
        return (request, answer);
    }

    /// <summary>Returns the volume's commit answer and upload id, after checking fsync → rename → folder fsync → answer.</summary>
    private (Syscall Answer, string? UploadId)? CheckPutOnVolume(TimedOp op, string vol, List<Syscall> calls, Syscall request, Syscall clientAnswer)
    {
        var rename = calls.FirstOrDefault(c => c.IsRename && c.Ok && Between(c, request, clientAnswer) && c.Strings is [var from, var to]
            && from.EndsWith(".data", StringComparison.Ordinal) && to.Contains("/blobs/", StringComparison.Ordinal) && Path.GetFileName(to) == op.Key);
        if (rename is null)
        {
            Fail(op, $"{vol}: no rename of the data file into blobs/");
            return null;
        }
        var (tmp, dest) = (rename.Strings[0], rename.Strings[1]);
        var uploadId = Path.GetFileNameWithoutExtension(tmp);
        var answer = calls.FirstOrDefault(c => c.IsSend && c.Start >= rename.End && c.Args.Contains("committed\\\":true", StringComparison.Ordinal)
            && c.Args.Contains($"upload_id\\\":\\\"{uploadId}\\\"", StringComparison.Ordinal));
        if (answer is null)
        {
            Fail(op, $"{vol}: no commit answer for upload {uploadId}");
            return null;
        }
        Expect(calls.Any(c => c.IsSync && c.Ok && c.FdPath == tmp && c.End <= rename.Start), op, $"{vol}: data file {Path.GetFileName(tmp)} not fsync'd before its rename into blobs/");
        Expect(calls.Any(c => c.IsSync && c.Ok && c.FdPath == Path.GetDirectoryName(dest) && c.Start >= rename.End && c.End <= answer.Start), op, $"{vol}: folder of {op.Key} not fsync'd after the rename and before the commit was answered");
        return (answer, uploadId);
    }

    /// <summary>Returns the volume's delete answer, after checking tombstone fsync → rename → folder fsync → answer.</summary>
    private (Syscall Answer, string? UploadId)? CheckDeleteOnVolume(TimedOp op, string vol, List<Syscall> calls, Syscall request, Syscall clientAnswer)
    {
        var rename = calls.FirstOrDefault(c => c.IsRename && c.Ok && Between(c, request, clientAnswer) && c.Strings is [_, var to]
            && to.Contains("/tombs/", StringComparison.Ordinal) && Path.GetFileName(to) == op.Key);
        if (rename is null)
        {
            Fail(op, $"{vol}: no tombstone renamed into tombs/");
            return null;
        }
        var (tmp, dest) = (rename.Strings[0], rename.Strings[1]);
        // The tombstone holds the delete's version, and the volume's answer names it: that ties the answer to this key.
        var version = calls.LastOrDefault(c => c.Name is "write" or "pwrite64" && c.Ok && c.FdPath == tmp && c.End <= rename.Start)?.Strings.FirstOrDefault();
        var answer = version is null ? null : calls.FirstOrDefault(c => c.IsSend && c.Start >= rename.End
            && c.Args.Contains("deleted\\\":true", StringComparison.Ordinal) && c.Args.Contains($"version\\\":{version}", StringComparison.Ordinal));
        if (answer is null)
        {
            Fail(op, $"{vol}: no delete answer naming the tombstone's version {version ?? "(tombstone write not seen)"}");
            return null;
        }
        Expect(calls.Any(c => c.IsSync && c.Ok && c.FdPath == tmp && c.End <= rename.Start), op, $"{vol}: tombstone file not fsync'd before its rename");
        Expect(calls.Any(c => c.IsSync && c.Ok && c.FdPath == Path.GetDirectoryName(dest) && c.Start >= rename.End && c.End <= answer.Start), op, $"{vol}: tombstone folder not fsync'd before the delete was answered");
        return (answer, null);
    }

    /// <summary>The WAL record of the final state is written after every replica answered and synced before the client's answer.</summary>
    private void CheckMetadata(TimedOp op, Syscall request, Syscall answer, List<(Syscall Answer, string? UploadId)> volumeAnswers)
    {
        var state = op.Kind == "PUT" ? "Committed" : "Tombstoned";
        // A PUT's record must name the upload the volumes committed (a record of another write of the key is not this one's).
        var uploadIds = volumeAnswers.Select(v => v.UploadId).OfType<string>().Distinct().ToList();
        var wal = coordinator.LastOrDefault(c => c.Name is "write" or "pwrite64" or "writev" && c.Ok && Between(c, request, answer)
            && (c.FdPath?.EndsWith(".log", StringComparison.Ordinal) ?? false)
            && c.Args.Contains("m/" + op.Key, StringComparison.Ordinal) && c.Args.Contains($"state\\\":\\\"{state}", StringComparison.Ordinal)
            && uploadIds.All(id => c.Args.Contains($"uploadId\\\":\\\"{id}\\\"", StringComparison.Ordinal)));
        if (wal is null)
        {
            Fail(op, $"coordinator: no {state} record{(uploadIds.Count > 0 ? " of upload " + string.Join("/", uploadIds) : "")} written to the RocksDB WAL before the answer");
            return;
        }
        if (op.Kind == "PUT")
        {
            Expect(volumeAnswers.All(a => a.Answer.Start <= wal.Start), op, "coordinator: committed metadata written before every replica answered its commit");
        }
        // fdatasync makes durable what was written before it entered: it must enter after the record's write returned.
        Expect(coordinator.Any(c => c.IsSync && c.Ok && c.FdPath == wal.FdPath && c.Start >= wal.End && c.End <= answer.Start), op, $"coordinator: {state} metadata not synced (WAL fdatasync) before the client's answer");
    }

    /// <summary>After the request arrived (its return) and before the answer was sent (its entry): work done for that request.</summary>
    private static bool Between(Syscall c, Syscall request, Syscall answer) => c.Start >= request.End && c.End <= answer.Start;

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
