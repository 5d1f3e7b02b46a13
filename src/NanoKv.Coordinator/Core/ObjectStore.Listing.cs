using System.Text;
using NanoKv.Metadata;

namespace NanoKv.Coordinator.Core;

/// <summary>A page of an S3 bucket listing: objects, common prefixes, and where the next page starts.</summary>
public sealed record ObjectListing(List<(byte[] Key, S3ObjectRecord Record)> Objects, List<byte[]> CommonPrefixes, bool Truncated, byte[]? NextMarker);

/// <summary>Bucket listings paged straight from the metadata store in byte order, one seek per page or prefix.</summary>
public sealed partial class ObjectStore
{
    /// <summary>
    /// Keys of bucket starting with prefix and after `after`, up to maxKeys entries (objects plus common
    /// prefixes). With a delimiter, keys sharing the part up to the next delimiter roll up into one common
    /// prefix and the scan seeks past them instead of reading them.
    /// </summary>
    public ObjectListing ListObjects(string bucket, byte[] prefix, byte[]? delimiter, byte[]? after, int maxKeys)
    {
        var bucketPrefix = Encoding.UTF8.GetBytes(bucket + "/");
        var objects = new List<(byte[], S3ObjectRecord)>();
        var prefixes = new List<byte[]>();
        byte[]? last = null;
        byte[]? from = null;
        var afterKey = after is null ? null : (byte[])[.. bucketPrefix, .. after];
        while (true)
        {
            var restarted = false;
            foreach (var (fullKey, record) in store.ScanRecords<S3ObjectRecord>(RecordTable.S3Objects, [.. bucketPrefix, .. prefix], from: from, after: afterKey))
            {
                var key = fullKey[bucketPrefix.Length..];
                if (maxKeys <= 0 || objects.Count + prefixes.Count >= maxKeys)
                {
                    return new ObjectListing(objects, prefixes, true, last);
                }
                var common = delimiter is { Length: > 0 } ? CommonPrefix(key, prefix, delimiter) : null;
                if (common is null)
                {
                    objects.Add((key, record));
                    last = key;
                    continue;
                }
                if (after is not null && common.AsSpan().SequenceCompareTo(after) <= 0 && after.AsSpan().StartsWith(common))
                {
                    // The marker is inside this prefix: it was returned on an earlier page.
                }
                else
                {
                    prefixes.Add(common);
                    last = common;
                }
                // Skip every key under this common prefix with one seek.
                var next = Successor(common);
                if (next is null)
                {
                    return new ObjectListing(objects, prefixes, false, null);
                }
                afterKey = null;
                from = [.. bucketPrefix, .. next];
                restarted = true;
                break;
            }
            if (!restarted)
            {
                return new ObjectListing(objects, prefixes, false, null);
            }
        }
    }

    /// <summary>The rolled-up prefix of key (prefix + up to and including the first delimiter after it), or null.</summary>
    private static byte[]? CommonPrefix(byte[] key, byte[] prefix, byte[] delimiter)
    {
        var rest = key.AsSpan(prefix.Length);
        var at = rest.IndexOf(delimiter);
        return at < 0 ? null : key[..(prefix.Length + at + delimiter.Length)];
    }

    /// <summary>The smallest key greater than every key starting with p (null when none exists).</summary>
    private static byte[]? Successor(byte[] p)
    {
        var s = (byte[])p.Clone();
        for (var i = s.Length - 1; i >= 0; i--)
        {
            if (s[i] != 0xFF)
            {
                s[i]++;
                return s[..(i + 1)];
            }
        }
        return null;
    }
}
