using System.Collections.Concurrent;
using System.Text.Json.Serialization;

namespace NanoKv.Volume;

/// <summary>A test-only fault: make the next `count` calls of an operation fail, stall, or corrupt data.</summary>
public sealed record FaultRule(
    [property: JsonPropertyName("op")] string Op,
    [property: JsonPropertyName("mode")] string Mode,
    [property: JsonPropertyName("count")] int Count = 1,
    [property: JsonPropertyName("status")] int Status = 503,
    [property: JsonPropertyName("stall_ms")] int StallMs = 30_000);

/// <summary>
/// Fault injection for retry/abort tests. Off unless the volume starts with --enable-fault-injection
/// (or NANOKV_FAULTS=1); then POST /admin/faults arms rules and DELETE /admin/faults clears them.
/// </summary>
public sealed class Faults
{
    private readonly ConcurrentDictionary<string, FaultRule> _rules = new();

    public void Arm(FaultRule rule) => _rules[rule.Op] = rule;

    public void Clear() => _rules.Clear();

    /// <summary>Takes one shot of the rule armed for op, if any.</summary>
    public FaultRule? Take(string op)
    {
        while (_rules.TryGetValue(op, out var rule))
        {
            var next = rule with { Count = rule.Count - 1 };
            if (next.Count <= 0 ? _rules.TryRemove(new KeyValuePair<string, FaultRule>(op, rule)) : _rules.TryUpdate(op, next, rule))
            {
                return rule;
            }
        }
        return null;
    }
}
