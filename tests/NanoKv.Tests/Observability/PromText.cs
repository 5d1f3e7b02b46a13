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

    [GeneratedRegex(@"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")]
    private static partial Regex Sample();

    [GeneratedRegex(@"([a-zA-Z_][a-zA-Z0-9_]*)=""((?:[^""\\]|\\.)*)""")]
    private static partial Regex Label();
}
