namespace NanoKv.Metadata.Postgres;

/// <summary>Prefix scans as key ranges: prefix ≤ k &lt; Successor(prefix), which a bytea primary key serves in order.</summary>
internal static class KeyRange
{
    /// <summary>The smallest byte string greater than every string starting with prefix; null when there is none (empty or all 0xFF).</summary>
    public static byte[]? Successor(ReadOnlySpan<byte> prefix)
    {
        var end = prefix.Length;
        while (end > 0 && prefix[end - 1] == 0xFF)
        {
            end--;
        }
        if (end == 0)
        {
            return null;
        }
        var next = prefix[..end].ToArray();
        next[^1]++;
        return next;
    }
}
