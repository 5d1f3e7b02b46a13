using System.Globalization;
using System.Text;
using System.Xml;

namespace NanoKv.S3.Xml;

/// <summary>Shared pieces of S3's XML: namespace, timestamp format, a writer that produces UTF-8 bytes.</summary>
public static class S3Xml
{
    public const string Namespace = "http://s3.amazonaws.com/doc/2006-03-01/";
    public const string ContentType = "application/xml";

    /// <summary>ISO 8601 with milliseconds, as S3 lists timestamps (2009-10-12T17:50:30.000Z).</summary>
    public static string Timestamp(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    /// <summary>RFC 1123 as S3 sends Last-Modified and friends.</summary>
    public static string HttpDate(DateTimeOffset t) => t.UtcDateTime.ToString("R", CultureInfo.InvariantCulture);

    private static readonly XmlWriterSettings Settings = new()
    {
        Encoding = new UTF8Encoding(false),
        Indent = false,
        OmitXmlDeclaration = false,
    };

    /// <summary>Writes a document whose root is <paramref name="root"/> (in the S3 namespace unless <paramref name="ns"/> is null).</summary>
    public static byte[] Document(string root, Action<XmlWriter> body, string? ns = Namespace)
    {
        using var ms = new MemoryStream();
        using (var w = XmlWriter.Create(ms, Settings))
        {
            w.WriteStartDocument();
            w.WriteStartElement(root, ns ?? "");
            body(w);
            w.WriteEndElement();
            w.WriteEndDocument();
        }
        return ms.ToArray();
    }

    public static void Element(this XmlWriter w, string name, string? value)
    {
        if (value is not null)
        {
            w.WriteElementString(name, value);
        }
    }

    public static void Element(this XmlWriter w, string name, long value) =>
        w.WriteElementString(name, value.ToString(CultureInfo.InvariantCulture));

    public static void Element(this XmlWriter w, string name, bool value) =>
        w.WriteElementString(name, value ? "true" : "false");

    public static void Element(this XmlWriter w, string name, DateTimeOffset value) =>
        w.WriteElementString(name, Timestamp(value));

    public static void Owner(this XmlWriter w, string element, string id)
    {
        w.WriteStartElement(element);
        w.WriteElementString("ID", id);
        w.WriteElementString("DisplayName", id);
        w.WriteEndElement();
    }
}
