namespace NanoKv.Tests.Infrastructure;

/// <summary>
/// Heavy tests (≥ 256 MB objects, soaks) carry [Trait("Category", "Heavy")] and are skipped unless
/// NANOKV_HEAVY=1; the README's regular test command filters them out, the heavy one selects them.
/// </summary>
public sealed class HeavyFactAttribute : FactAttribute
{
    public HeavyFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("NANOKV_HEAVY") != "1")
        {
            Skip = "heavy test: set NANOKV_HEAVY=1 (see README, 'Run tests')";
        }
    }
}
