using System.Collections;
using System.Globalization;
using System.Text.RegularExpressions;

namespace NanoKv.Volume;

/// <summary>
/// The volume's default port from the environment, so the seed's `V1_PORT=3001 … --data ./vol1` and
/// `V2_PORT=3002 … --data ./vol2` bind 3001 and 3002.
/// </summary>
public static partial class VolumePort
{
    public const int Default = 3001;

    /// <summary>
    /// V&lt;N&gt;_PORT where N is the trailing number of the data folder's name ("vol2" → V2_PORT); else the only
    /// V&lt;N&gt;_PORT variable set; else V_PORT; else 3001. An --port flag overrides all of these.
    /// </summary>
    public static int FromEnvironment(string dataDir, IDictionary env)
    {
        var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dataDir)));
        var digits = TrailingDigits().Match(name);
        if (digits.Success && Parse(env[$"V{int.Parse(digits.Value, CultureInfo.InvariantCulture)}_PORT"]) is int byName)
        {
            return byName;
        }
        var numbered = env.Keys.OfType<string>().Where(k => NumberedVar().IsMatch(k)).ToList();
        if (numbered.Count == 1 && Parse(env[numbered[0]]) is int only)
        {
            return only;
        }
        return Parse(env["V_PORT"]) ?? Default;
    }

    private static int? Parse(object? value) =>
        int.TryParse(value as string, NumberStyles.Integer, CultureInfo.InvariantCulture, out var p) && p is > 0 and < 65536 ? p : null;

    [GeneratedRegex("[0-9]+$")]
    private static partial Regex TrailingDigits();

    [GeneratedRegex("^V[0-9]+_PORT$")]
    private static partial Regex NumberedVar();
}
