using System.Diagnostics;

namespace NanoKv.Tests.S3;

/// <summary>Skips a test when a Debian tool it drives is not installed (.ci/run installs awscli, rclone and python3-boto3 in CI).</summary>
public sealed class ToolFactAttribute : FactAttribute
{
    public ToolFactAttribute(string tool)
    {
        if (ToolRunner.Find(tool) is null)
        {
            Skip = $"{tool} is not installed (apt-get install {ToolRunner.Package(tool)}; .ci/run does)";
        }
    }
}

/// <summary>Runs a real client as a child process with a time bound, capturing its output.</summary>
internal static class ToolRunner
{
    /// <summary>The Debian binary: /usr/bin first (a pyenv shim on PATH may be another version, or lack boto3).</summary>
    public static string? Find(string tool) => tool switch
    {
        "boto3" => File.Exists("/usr/bin/python3") && Run("/usr/bin/python3", ["-c", "import boto3"], null, TimeSpan.FromSeconds(30)).GetAwaiter().GetResult().Code == 0 ? "/usr/bin/python3" : null,
        _ => File.Exists("/usr/bin/" + tool) ? "/usr/bin/" + tool : null,
    };

    public static string Package(string tool) => tool switch
    {
        "aws" => "awscli",
        "boto3" => "python3-boto3",
        _ => tool,
    };

    public static async Task<(int Code, string Output)> Run(string exe, IEnumerable<string> args, IDictionary<string, string>? env, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        // The machine may point AWS_CA_BUNDLE at a corporate bundle; the endpoint here is plain HTTP and rclone refuses the variable.
        psi.Environment.Remove("AWS_CA_BUNDLE");
        foreach (var (k, v) in env ?? new Dictionary<string, string>())
        {
            psi.Environment[k] = v;
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            return (-1, $"timed out after {timeout}: {string.Join(' ', args)}\n{await stdout}\n{await stderr}");
        }
        return (p.ExitCode, await stdout + await stderr);
    }
}
