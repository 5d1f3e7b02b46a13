using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using NanoKv.Core;

namespace NanoKv.Volume;

/// <summary>A test-only fault: make the next `count` calls of an operation fail, stall, or corrupt data.</summary>
public sealed record FaultRule(
    [property: JsonPropertyName("op")] string Op,
    [property: JsonPropertyName("mode")] string Mode,
    [property: JsonPropertyName("count")] int Count = 1,
    [property: JsonPropertyName("status")] int Status = 503,
    [property: JsonPropertyName("stall_ms")] int StallMs = 30_000);

/// <summary>Armed rules and how many times each op's fault fired (GET /admin/faults).</summary>
public sealed record FaultReport(
    [property: JsonPropertyName("armed")] IReadOnlyList<FaultRule> Armed,
    [property: JsonPropertyName("hits")] IReadOnlyDictionary<string, int> Hits);

/// <summary>
/// Fault injection for retry/abort tests. Off unless the volume starts with --enable-fault-injection
/// (or NANOKV_FAULTS=1); then POST /admin/faults arms a rule, GET reports hits, DELETE clears (and reports).
/// Rules count their hits so a test can prove the fault it injected fired.
/// </summary>
public sealed class Faults
{
    /// <summary>Ops a rule may name: the guarded endpoints, plain GET, and the two data-corrupting hooks.</summary>
    public static readonly IReadOnlySet<string> KnownOps = new HashSet<string>(StringComparer.Ordinal)
    {
        "prepare", "upload", "status", "pull", "commit", "abort", "delete", "list", "blob", "purge_tombstone", "sweep_tmp",
        "get", "upload_corrupt", "pull_corrupt",
    };

    /// <summary>fail answers the rule's status and stall holds the call for stall_ms; the *_corrupt ops take corrupt.</summary>
    public static readonly IReadOnlySet<string> KnownModes = new HashSet<string>(StringComparer.Ordinal) { "fail", "stall", "corrupt" };

    private readonly ConcurrentDictionary<string, FaultRule> _rules = new();
    private readonly ConcurrentDictionary<string, int> _hits = new();
    private readonly ConcurrentDictionary<string, byte> _armed = new();

    /// <summary>Why a rule cannot be armed, or null when it is valid.</summary>
    public static string? Invalid(FaultRule rule) =>
        !KnownOps.Contains(rule.Op) ? $"unknown op '{rule.Op}' (known: {string.Join(", ", KnownOps.Order(StringComparer.Ordinal))})"
        : !KnownModes.Contains(rule.Mode) ? $"unknown mode '{rule.Mode}' (known: fail, stall, corrupt)"
        : rule.Op.EndsWith("_corrupt", StringComparison.Ordinal) != (rule.Mode == "corrupt") ? $"op '{rule.Op}' cannot take mode '{rule.Mode}' (corrupt goes with the *_corrupt ops only)"
        : rule.Count < 1 ? "count must be at least 1"
        : rule.Status is < 400 or > 599 ? "status must be an HTTP error (400-599)"
        : null;

    public void Arm(FaultRule rule)
    {
        if (Invalid(rule) is string why)
        {
            throw new ArgumentException(why, nameof(rule));
        }
        _rules[rule.Op] = rule;
        _armed[rule.Op] = 0;
    }

    public void Clear()
    {
        _rules.Clear();
        _hits.Clear();
        _armed.Clear();
    }

    /// <summary>Ops armed since the last clear whose fault never fired: a test that injected them proved nothing.</summary>
    public IReadOnlyList<string> NeverFired() => _armed.Keys.Where(op => Hits(op) == 0).Order(StringComparer.Ordinal).ToList();

    /// <summary>How many times a fault fired for op since the last clear.</summary>
    public int Hits(string op) => _hits.TryGetValue(op, out var n) ? n : 0;

    public FaultReport Report() => new(
        _rules.Values.OrderBy(r => r.Op, StringComparer.Ordinal).ToList(),
        new SortedDictionary<string, int>(_hits, StringComparer.Ordinal));

    /// <summary>True while a rule for op is armed (does not count as a hit).</summary>
    public bool IsArmed(string op) => _rules.ContainsKey(op);

    /// <summary>Takes one shot of the rule armed for op, if any.</summary>
    public FaultRule? Take(string op)
    {
        while (_rules.TryGetValue(op, out var rule))
        {
            var next = rule with { Count = rule.Count - 1 };
            if (next.Count <= 0 ? _rules.TryRemove(new KeyValuePair<string, FaultRule>(op, rule)) : _rules.TryUpdate(op, next, rule))
            {
                _hits.AddOrUpdate(op, 1, (_, n) => n + 1);
                return rule;
            }
        }
        return null;
    }

    /// <summary>POST/GET/DELETE /admin/faults; 404 unless fault injection is enabled.</summary>
    public void Map(WebApplication app, bool enabled)
    {
        var disabled = ApiError.NotFoundResult("fault injection is disabled (start with --enable-fault-injection)");
        app.MapPost("/admin/faults", async Task<IResult> (HttpContext ctx) =>
        {
            if (!enabled)
            {
                return disabled;
            }
            FaultRule? rule;
            try
            {
                rule = await ctx.Request.ReadFromJsonAsync<FaultRule>(ctx.RequestAborted);
            }
            catch (JsonException ex)
            {
                return ApiError.BadRequest(ApiError.Codes.InvalidArgument, $"body must be a fault rule: {ex.Message}");
            }
            if (rule is null)
            {
                return ApiError.BadRequest(ApiError.Codes.InvalidArgument, "body must be a fault rule");
            }
            if (Invalid(rule) is string why)
            {
                return ApiError.BadRequest(ApiError.Codes.InvalidArgument, why);
            }
            Arm(rule);
            return Results.Json(rule);
        });
        app.MapGet("/admin/faults", () => enabled ? Results.Json(Report()) : disabled);
        app.MapDelete("/admin/faults", () =>
        {
            if (!enabled)
            {
                return disabled;
            }
            var report = Report();
            Clear();
            return Results.Json(report);
        });
    }
}
