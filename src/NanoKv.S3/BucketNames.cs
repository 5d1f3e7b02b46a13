using System.Net;

namespace NanoKv.S3;

/// <summary>AWS general-purpose bucket naming rules.</summary>
public static class BucketNames
{
    private static readonly string[] ReservedPrefixes = ["xn--", "sthree-", "amzn-s3-demo-"];
    private static readonly string[] ReservedSuffixes = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];

    /// <summary>Null when valid, else why not.</summary>
    public static string? Problem(string name)
    {
        if (name.Length is < 3 or > 63)
        {
            return "Bucket names must be between 3 and 63 characters long.";
        }
        foreach (var c in name)
        {
            if (!(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '.' or '-'))
            {
                return "Bucket names can consist only of lowercase letters, numbers, dots and hyphens.";
            }
        }
        if (!char.IsAsciiLetterOrDigit(name[0]) || !char.IsAsciiLetterOrDigit(name[^1]))
        {
            return "Bucket names must begin and end with a letter or number.";
        }
        if (name.Contains("..", StringComparison.Ordinal))
        {
            return "Bucket names must not contain two adjacent periods.";
        }
        if (name.Contains(".-", StringComparison.Ordinal) || name.Contains("-.", StringComparison.Ordinal))
        {
            // Each dot-separated label must be a DNS label (AWS refuses "foo.-bar" and "foo-.bar" too).
            return "Bucket names must not contain a hyphen next to a period.";
        }
        if (name.Count(c => c == '.') == 3 && IPAddress.TryParse(name, out _))
        {
            return "Bucket names must not be formatted as an IP address.";
        }
        if (ReservedPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal))
            || ReservedSuffixes.Any(s => name.EndsWith(s, StringComparison.Ordinal)))
        {
            return "Bucket names must not use a reserved prefix or suffix.";
        }
        return null;
    }

    public static bool IsValid(string name) => Problem(name) is null;

    public static void Validate(string name)
    {
        if (Problem(name) is { } why)
        {
            throw new S3Exception(S3ErrorCode.InvalidBucketName, why) { Details = [new("BucketName", name)] };
        }
    }
}
