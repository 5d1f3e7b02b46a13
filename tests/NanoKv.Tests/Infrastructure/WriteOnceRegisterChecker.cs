namespace NanoKv.Tests.Infrastructure;

/// <summary>What a client saw from one call on one key.</summary>
public enum OpOutcome
{
    /// <summary>PUT 201 / DELETE 204.</summary>
    Ok,

    /// <summary>PUT 409 key_exists: the key held a value.</summary>
    Exists,

    /// <summary>GET 404.</summary>
    NotFound,

    /// <summary>GET 200 with the value written by PUT op <see cref="HistoryOp.Value"/>.</summary>
    Read,

    /// <summary>A PUT or DELETE that failed or timed out: it may or may not have taken effect, at any time after it began.</summary>
    Unknown,
}

public enum OpKind
{
    Put,
    Get,
    Delete,
}

/// <summary>One call of a history: its kind, the value it wrote or read, when it began and ended, what it saw.</summary>
public sealed record HistoryOp(string Key, OpKind Kind, int Value, long Start, long End, OpOutcome Outcome);

/// <summary>
/// Linearizability checker (Wing &amp; Gong search with Lowe's state cache) for the write-once register with
/// delete that nanokv promises per key: PUT succeeds only on an absent key, DELETE empties it, GET returns the
/// one acknowledged value since the last DELETE. Keys are checked apart (linearizability is local). Ops with an
/// unknown outcome may take effect at any instant after they began, or never.
/// </summary>
public static class WriteOnceRegisterChecker
{
    /// <summary>Null when every key's history is linearizable; else the key and its history, for the failure message.</summary>
    public static string? Check(IEnumerable<HistoryOp> history)
    {
        foreach (var group in history.GroupBy(o => o.Key))
        {
            var ops = group.OrderBy(o => o.Start).ToArray();
            if (!Linearizable(ops))
            {
                return Explain(group.Key, ops);
            }
        }
        return null;
    }

    /// <summary>
    /// Names the first call the model cannot explain, with the calls around it: the history cut at the end of
    /// that call is the shortest failing prefix (calls still running at the cut: GETs dropped, writes unknown).
    /// A whole history can run to hundreds of calls, more than a failure message shows.
    /// </summary>
    private static string Explain(string key, HistoryOp[] ops)
    {
        var ends = ops.Where(o => o.End != long.MaxValue).Select(o => o.End).Order().ToArray();
        int lo = 0, hi = ends.Length - 1; // invariant: the prefix cut at ends[hi] fails (the whole history does)
        while (lo < hi)
        {
            var mid = (lo + hi) / 2;
            if (Linearizable(CutAt(ops, ends[mid])))
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        var cut = ends.Length == 0 ? long.MaxValue : ends[hi];
        var culprit = ops.FirstOrDefault(o => o.End == cut);
        var from = culprit?.Start ?? cut;
        var window = ops.Where(o => o.Start <= cut).TakeLast(20)
            .Union(ops.Where(o => o.Start <= cut && o.End >= from)) // everything that overlapped it
            .OrderBy(o => o.Start);
        return $"key {key}: no linearization; the first call the model cannot explain is {Describe(culprit)}\n"
            + $"calls up to it ({ops.Length} on this key in all; times in Stopwatch ticks):\n"
            + string.Join("\n", window.Select(o => (o == culprit ? "> " : "  ") + Describe(o)));
    }

    private static string Describe(HistoryOp? o) =>
        o is null ? "(none)" : $"{o.Kind} {o.Value} [{o.Start}, {(o.End == long.MaxValue ? "∞" : o.End)}] {o.Outcome}";

    /// <summary>The history as it stood at time t: finished calls as seen, running writes unknown, running reads dropped.</summary>
    private static HistoryOp[] CutAt(HistoryOp[] ops, long t) =>
        ops.Where(o => o.Start <= t && (o.End <= t || o.Kind != OpKind.Get))
            .Select(o => o.End <= t ? o : o with { End = long.MaxValue, Outcome = OpOutcome.Unknown })
            .ToArray();

    private static bool Linearizable(HistoryOp[] ops)
    {
        var done = new bool[ops.Length];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var required = ops.Count(o => o.Outcome != OpOutcome.Unknown);
        return Search(ops, done, state: 0, linearizedRequired: 0, required, seen);
    }

    /// <summary>state: 0 = absent, v &gt; 0 = holding the value of PUT op v.</summary>
    private static bool Search(HistoryOp[] ops, bool[] done, int state, int linearizedRequired, int required, HashSet<string> seen)
    {
        if (linearizedRequired == required)
        {
            return true; // what is left has an unknown outcome: it may never have taken effect
        }
        // Candidates: calls that began before the earliest end among the ops not yet linearized.
        var minEnd = long.MaxValue;
        for (var i = 0; i < ops.Length; i++)
        {
            if (!done[i] && ops[i].End < minEnd)
            {
                minEnd = ops[i].End;
            }
        }
        for (var i = 0; i < ops.Length && ops[i].Start <= minEnd; i++)
        {
            if (done[i] || Step(ops[i], state) is not int next)
            {
                continue;
            }
            done[i] = true;
            var key = string.Concat(done.Select(d => d ? '1' : '0')) + ":" + next;
            if (seen.Add(key) && Search(ops, done, next, linearizedRequired + (ops[i].Outcome == OpOutcome.Unknown ? 0 : 1), required, seen))
            {
                return true;
            }
            done[i] = false;
        }
        return false;
    }

    /// <summary>The register after op, or null when op could not have seen what it saw in this state.</summary>
    private static int? Step(HistoryOp op, int state) => (op.Kind, op.Outcome) switch
    {
        (OpKind.Put, OpOutcome.Ok or OpOutcome.Unknown) => state == 0 ? op.Value : null,
        (OpKind.Put, OpOutcome.Exists) => state != 0 ? state : null,
        (OpKind.Delete, _) => 0,
        (OpKind.Get, OpOutcome.NotFound) => state == 0 ? 0 : null,
        (OpKind.Get, OpOutcome.Read) => state == op.Value ? state : null,
        _ => null,
    };
}
