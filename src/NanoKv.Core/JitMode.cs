using System.Runtime.InteropServices;
using System.Text;

namespace NanoKv.Core;

/// <summary>
/// Servers run the framework's code JIT-compiled at full optimisation, not its ReadyToRun images. With
/// tiered compilation off (RuntimeSettingsTests), precompiled framework code is never recompiled, and it pays
/// stubs for every virtual and generic call: per 1 MiB GET the coordinator spent 0.33–0.38 ms of CPU with it
/// and 0.21–0.25 ms without, a volume 0.38–0.45 vs 0.27–0.31 (1 MiB GET c=16 +20–30 %, PUT +9–12 %).
/// The runtime reads that switch only from the environment (DOTNET_ReadyToRun), so a server re-executes
/// itself once with it set (execve: same PID, stdio and arguments) before anything else runs. The cost is
/// a few seconds of JIT at start. NANOKV_READY_TO_RUN=1 keeps the precompiled code (faster start).
/// </summary>
public static partial class JitMode
{
    private const string Marker = "NANOKV_JIT_REEXEC";

    /// <summary>True in a server that runs without ReadyToRun code (logged at start, checked by tests).</summary>
    public static bool FullJit { get; private set; }

    /// <summary>Call first in Main of a long-running server: returns only when no re-exec happened (or it failed).</summary>
    public static void EnsureFullJit()
    {
        if (Environment.GetEnvironmentVariable(Marker) == "1")
        {
            FullJit = true;
            // Children (tools a server starts) get the normal environment back.
            Environment.SetEnvironmentVariable(Marker, null);
            Environment.SetEnvironmentVariable("DOTNET_ReadyToRun", null);
            return;
        }
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("NANOKV_READY_TO_RUN") == "1"
            || Environment.GetEnvironmentVariable("DOTNET_ReadyToRun") is not null)
        {
            return;
        }
        string?[] argv;
        try
        {
            argv = [.. Encoding.UTF8.GetString(File.ReadAllBytes("/proc/self/cmdline")).TrimEnd('\0').Split('\0'), null];
        }
        catch (IOException)
        {
            return;
        }
        var env = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .Select(e => $"{e.Key}={e.Value}")
            .Append("DOTNET_ReadyToRun=0").Append(Marker + "=1").Cast<string?>().Append(null).ToArray();
        _ = Execve("/proc/self/exe", argv, env); // returns only on failure: carry on with the precompiled code
    }

    [LibraryImport("libc", EntryPoint = "execve", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Execve(string path, string?[] argv, string?[] envp);
}
