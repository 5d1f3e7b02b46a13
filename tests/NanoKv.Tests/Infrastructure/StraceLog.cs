using System.Globalization;
using System.Text.RegularExpressions;

namespace NanoKv.Tests.Infrastructure;

/// <summary>One system call from `strace -f -ttt -y`: who, when (start and end, epoch seconds), what.</summary>
public sealed record Syscall(int Pid, string Name, double Start, double End, string Args, string Result)
{
    /// <summary>The path strace -y prints for the first (fd) argument, e.g. fsync(7&lt;/a/b&gt;) → /a/b.</summary>
    public string? FdPath
    {
        get
        {
            var lt = Args.IndexOf('<', StringComparison.Ordinal);
            var gt = lt < 0 ? -1 : Args.IndexOf('>', lt);
            return lt < 0 || gt < 0 || Args.IndexOf(',', StringComparison.Ordinal) is var comma && comma >= 0 && comma < lt ? null : Args[(lt + 1)..gt];
        }
    }

    /// <summary>The quoted string arguments (rename's old and new path; a write's data), unescaped for quotes only.</summary>
    public IReadOnlyList<string> Strings => StraceLog.QuotedArg().Matches(Args).Select(m => m.Groups[1].Value.Replace("\\\"", "\"", StringComparison.Ordinal)).ToList();

    public bool Ok => !Result.StartsWith('-');

    public bool IsSync => Name is "fsync" or "fdatasync";

    public bool IsRename => Name is "rename" or "renameat" or "renameat2";

    public bool IsSend => Name is "sendto" or "sendmsg" or "write" or "writev" && (FdPath?.StartsWith("socket:", StringComparison.Ordinal) ?? false);

    /// <summary>A read from a connection (the request a server received: its bytes are printed when it returns).</summary>
    public bool IsReceive => Name is "recvfrom" or "recvmsg" or "read" && (FdPath?.StartsWith("socket:", StringComparison.Ordinal) ?? false);

    public override string ToString() => $"{Start.ToString("F6", CultureInfo.InvariantCulture)} [{Pid}] {Name}({(Args.Length > 160 ? Args[..160] + "…" : Args)}) = {Result}";
}

/// <summary>
/// Parser for `strace -f -ttt -y -o FILE` output: "PID SECONDS.MICROS name(args) = result", with calls split
/// across threads as "name(args &lt;unfinished ...&gt;" + "&lt;... name resumed&gt;rest) = result".
/// </summary>
public static partial class StraceLog
{
    /// <summary>
    /// The flags the durability checker needs: paths of fds, wall-clock times, received requests (to tie an
    /// answer to its request by connection), and enough of each buffer that a RocksDB group commit of several
    /// records still shows every key.
    /// </summary>
    public static IReadOnlyList<string> Wrapper(string outputFile) =>
    [
        "strace", "-f", "--seccomp-bpf", "-ttt", "-y", "-s", "2048", "-o", outputFile,
        "-e", "trace=fsync,fdatasync,rename,renameat,renameat2,openat,write,pwrite64,writev,sendto,sendmsg,recvfrom,recvmsg",
    ];

    public static List<Syscall> Parse(IEnumerable<string> lines)
    {
        var calls = new List<Syscall>();
        var pending = new Dictionary<(int Pid, string Name), (double Start, string Args)>();
        foreach (var line in lines)
        {
            var m = LinePattern().Match(line);
            if (!m.Success)
            {
                continue;
            }
            var pid = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            var ts = double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
            var rest = m.Groups[3].Value;
            if (rest.StartsWith("<... ", StringComparison.Ordinal))
            {
                var r = ResumedPattern().Match(rest);
                if (r.Success && pending.Remove((pid, r.Groups[1].Value), out var p))
                {
                    var (args, result) = SplitResult(p.Args + r.Groups[2].Value);
                    calls.Add(new Syscall(pid, r.Groups[1].Value, p.Start, ts, args, result));
                }
                continue;
            }
            var paren = rest.IndexOf('(', StringComparison.Ordinal);
            if (paren <= 0 || rest.StartsWith("---", StringComparison.Ordinal) || rest.StartsWith("+++", StringComparison.Ordinal))
            {
                continue;
            }
            var name = rest[..paren];
            var body = rest[(paren + 1)..];
            if (body.EndsWith("<unfinished ...>", StringComparison.Ordinal))
            {
                pending[(pid, name)] = (ts, body[..^"<unfinished ...>".Length].TrimEnd());
                continue;
            }
            var (a, res) = SplitResult(body);
            calls.Add(new Syscall(pid, name, ts, ts, a, res));
        }
        // Stable: calls stamped in the same microsecond keep the order strace logged them in.
        return calls.OrderBy(c => c.Start).ToList();
    }

    public static List<Syscall> ParseFile(string path) => Parse(File.ReadLines(path));

    /// <summary>"args) = 0" → ("args", "0").</summary>
    private static (string Args, string Result) SplitResult(string body)
    {
        var eq = body.LastIndexOf(") = ", StringComparison.Ordinal);
        return eq < 0 ? (body.TrimEnd(')'), "?") : (body[..eq], body[(eq + 4)..]);
    }

    [GeneratedRegex(@"^(\d+)\s+(\d+\.\d+)\s+(.*)$")]
    private static partial Regex LinePattern();

    [GeneratedRegex(@"^<\.\.\. (\w+) resumed>(.*)$")]
    private static partial Regex ResumedPattern();

    [GeneratedRegex(@"""((?:[^""\\]|\\.)*)""")]
    internal static partial Regex QuotedArg();
}
