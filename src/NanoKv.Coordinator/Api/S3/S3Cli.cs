using System.CommandLine;
using System.Text;
using NanoKv.Core;
using NanoKv.S3;

namespace NanoKv.Coordinator.Api.S3;

/// <summary>The S3 options of `coord serve` and `coord dev`.</summary>
public sealed class S3Cli
{
    public Option<int?> Port { get; } = new("--s3-port") { Description = "Serve the S3 API on this port (needs --s3-users)" };

    public Option<string> Host { get; } = new("--s3-host") { Description = "Address the S3 listener binds", DefaultValueFactory = _ => "127.0.0.1" };

    public Option<string?> Users { get; } = new("--s3-users") { Description = $"S3 credentials ACCESS_KEY:SECRET_KEY[,...] (default: ${S3Options.EnvUsers})" };

    public Option<string?> Domains { get; } = new("--s3-domain") { Description = "Domain(s) for virtual-host style addressing, comma-separated: Host 'bucket.DOMAIN' addresses bucket (localhost always works)" };

    public IEnumerable<Option> All => [Port, Host, Users, Domains];

    /// <summary>"localhost" plus the --s3-domain names, lower-cased, without a leading dot.</summary>
    private List<string> DomainsOf(ParseResult p) =>
        ["localhost", .. (p.GetValue(Domains) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(d => d.TrimStart('.').ToLowerInvariant()).Where(d => d.Length > 0 && d != "localhost").Distinct()];

    /// <summary>`coord serve`: S3 only when --s3-port is given, and then never without users.</summary>
    public S3Options? ForServe(ParseResult p)
    {
        if (p.GetValue(Port) is not { } port)
        {
            return null;
        }
        var spec = p.GetValue(Users) ?? Environment.GetEnvironmentVariable(S3Options.EnvUsers);
        if (string.IsNullOrWhiteSpace(spec))
        {
            throw new ArgumentException($"--s3-port needs --s3-users ACCESS_KEY:SECRET_KEY (or ${S3Options.EnvUsers}); the S3 listener does not start without users");
        }
        return new S3Options { Host = p.GetValue(Host)!, Port = port, Users = ParseUsers(spec), Domains = DomainsOf(p) };
    }

    /// <summary>`coord dev`: S3 on 127.0.0.1:9000 unless told otherwise, with credentials generated once and kept in the data folder.</summary>
    public S3Options ForDev(ParseResult p, string dataDir, out string credentialsFile, out string accessKey, out string secretKey)
    {
        credentialsFile = Path.Combine(dataDir, "s3-credentials");
        var spec = p.GetValue(Users) ?? Environment.GetEnvironmentVariable(S3Options.EnvUsers);
        if (string.IsNullOrWhiteSpace(spec))
        {
            if (!File.Exists(credentialsFile))
            {
                var (ak, sk) = S3Users.Generate();
                Durable.WriteAllBytes(credentialsFile, Encoding.UTF8.GetBytes($"{ak}:{sk}\n"));
            }
            spec = File.ReadAllText(credentialsFile).Trim();
        }
        var users = ParseUsers(spec);
        accessKey = users.AccessKeys.First();
        users.TryGetSecret(accessKey, out secretKey);
        return new S3Options { Host = p.GetValue(Host)!, Port = p.GetValue(Port) ?? 9000, Users = users, Domains = DomainsOf(p) };
    }

    private static S3Users ParseUsers(string spec)
    {
        try
        {
            return S3Users.Parse(spec);
        }
        catch (FormatException e)
        {
            throw new ArgumentException(e.Message, e);
        }
    }
}
