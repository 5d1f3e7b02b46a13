using System.Globalization;
using System.Text.RegularExpressions;

namespace NanoKv.Tests.Observability;

/// <summary>Reads samples out of a Prometheus text exposition, for assertions.</summary>
public static partial class PromText
{
    /// <summary>Sum of the samples named <paramref name="name"/> whose labels include every given pair; null when none exists.</summary>
    public static double? Sum(string text, string name, params (string Label, string Value)[] labels)
    {
        double? total = null;
        foreach (var line in text.Split('\n'))
        {
            var m = Sample().Match(line);
            if (!m.Success || m.Groups[1].Value != name)
            {
                continue;
            }
            var have = Label().Matches(m.Groups[2].Value).ToDictionary(l => l.Groups[1].Value, l => l.Groups[2].Value);
            if (labels.All(l => have.TryGetValue(l.Label, out var v) && v == l.Value))
            {
                total = (total ?? 0) + double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
            }
        }
        return total;
    }

    /// <summary>Metric families (`# TYPE` lines) whose name starts with nanokv_.</summary>
    public static IEnumerable<string> Families(string text) =>
        text.Split('\n').Where(l => l.StartsWith("# TYPE nanokv_", StringComparison.Ordinal)).Select(l => l.Split(' ')[2]);

    /// <summary>The repository root (holds NanoKv.sln), for tests that read docs/ or run scripts/.</summary>
    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "NanoKv.sln")))
        {
            dir = dir.Parent;
        }
        return dir?.FullName ?? throw new InvalidOperationException("repository root (NanoKv.sln) not found");
    }

    [GeneratedRegex(@"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")]
    private static partial Regex Sample();

    [GeneratedRegex(@"([a-zA-Z_][a-zA-Z0-9_]*)=""((?:[^""\\]|\\.)*)""")]
    private static partial Regex Label();
}
