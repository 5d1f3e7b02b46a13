using System.Globalization;
using System.Xml;
using System.Xml.Linq;
using NanoKv.S3.Checksums;

namespace NanoKv.S3.Xml;

/// <summary>A part listed in CompleteMultipartUpload; ChecksumName (x-amz-checksum-*) and Checksum (base64) from its Checksum* element, if given.</summary>
public sealed record CompletedPart(int PartNumber, string ETag, string? ChecksumName = null, string? Checksum = null);

public sealed record DeleteObjectsRequest(bool Quiet, IReadOnlyList<string> Keys);

/// <summary>Parsers for the XML request bodies S3 clients send; elements are matched by local name (clients differ on the namespace).</summary>
public static class S3Requests
{
    /// <summary>Enough for 10,000 parts or 1,000 keys of 1 KiB with markup.</summary>
    public const int MaxBodyBytes = 2 * 1024 * 1024;

    public const int MaxDeleteKeys = 1000;

    private static readonly XmlReaderSettings Settings = new()
    {
        Async = true,
        DtdProcessing = DtdProcessing.Prohibit,
        XmlResolver = null,
        IgnoreComments = true,
        IgnoreProcessingInstructions = true,
    };

    /// <summary>Reads a bounded XML body; null when the body is empty.</summary>
    public static async Task<XElement?> LoadAsync(Stream body, CancellationToken ct)
    {
        using var ms = new MemoryStream();
        var buf = new byte[16 * 1024];
        int n;
        while ((n = await body.ReadAsync(buf, ct)) > 0)
        {
            if (ms.Length + n > MaxBodyBytes)
            {
                throw new S3Exception(S3ErrorCode.MalformedXML, $"The XML body is larger than {MaxBodyBytes} bytes.");
            }
            ms.Write(buf, 0, n);
        }
        if (ms.Length == 0)
        {
            return null;
        }
        ms.Position = 0;
        try
        {
            using var reader = XmlReader.Create(ms, Settings);
            var doc = await XDocument.LoadAsync(reader, LoadOptions.None, ct);
            return doc.Root;
        }
        catch (XmlException)
        {
            throw Malformed();
        }
    }

    private static S3Exception Malformed() =>
        new(S3ErrorCode.MalformedXML, "The XML you provided was not well-formed or did not validate against our published schema.");

    private static IEnumerable<XElement> Children(XElement e, string name) => e.Elements().Where(c => c.Name.LocalName == name);

    private static string? Child(XElement e, string name) => Children(e, name).FirstOrDefault()?.Value;

    /// <summary>CompleteMultipartUpload: parts in the order given (order is validated by the caller).</summary>
    public static IReadOnlyList<CompletedPart> ParseCompleteMultipartUpload(XElement? root)
    {
        if (root is null || root.Name.LocalName != "CompleteMultipartUpload")
        {
            throw Malformed();
        }
        var parts = new List<CompletedPart>();
        foreach (var p in Children(root, "Part"))
        {
            if (!int.TryParse(Child(p, "PartNumber"), NumberStyles.None, CultureInfo.InvariantCulture, out var number)
                || Child(p, "ETag") is not { } etag)
            {
                throw Malformed();
            }
            var checksum = ChecksumAlgorithms.All.Select(a => (Name: ChecksumAlgorithms.HeaderName(a), Value: Child(p, ChecksumAlgorithms.XmlName(a)))).FirstOrDefault(c => c.Value is not null);
            parts.Add(new CompletedPart(number, ETags.Unquote(etag), checksum.Value is null ? null : checksum.Name, checksum.Value));
        }
        if (parts.Count == 0)
        {
            throw Malformed();
        }
        return parts;
    }

    /// <summary>DeleteObjects: up to 1000 keys; VersionId is ignored (no versioning).</summary>
    public static DeleteObjectsRequest ParseDelete(XElement? root)
    {
        if (root is null || root.Name.LocalName != "Delete")
        {
            throw Malformed();
        }
        var quiet = string.Equals(Child(root, "Quiet")?.Trim(), "true", StringComparison.OrdinalIgnoreCase);
        var keys = new List<string>();
        foreach (var o in Children(root, "Object"))
        {
            keys.Add(Child(o, "Key") ?? throw Malformed());
        }
        if (keys.Count == 0 || keys.Count > MaxDeleteKeys)
        {
            throw Malformed();
        }
        return new DeleteObjectsRequest(quiet, keys);
    }

    /// <summary>CreateBucket's optional body; returns the LocationConstraint or null.</summary>
    public static string? ParseCreateBucket(XElement? root)
    {
        if (root is null)
        {
            return null;
        }
        if (root.Name.LocalName != "CreateBucketConfiguration")
        {
            throw Malformed();
        }
        var lc = Child(root, "LocationConstraint");
        return string.IsNullOrEmpty(lc) ? null : lc;
    }
}
