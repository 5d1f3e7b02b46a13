using System.Xml;

namespace NanoKv.S3.Xml;

/// <summary>The S3 error body: &lt;Error&gt;&lt;Code/&gt;&lt;Message/&gt;[details]&lt;Resource/&gt;&lt;RequestId/&gt;&lt;/Error&gt; (no namespace, as AWS sends it).</summary>
public static class S3ErrorDocument
{
    public static byte[] Write(S3ErrorCode code, string message, string resource, string requestId,
        IEnumerable<KeyValuePair<string, string>>? details = null) =>
        S3Xml.Document("Error", w =>
        {
            w.WriteElementString("Code", code.ToString());
            w.WriteElementString("Message", message);
            foreach (var (k, v) in details ?? [])
            {
                if (XmlConvert.VerifyNCName(k) is not null)
                {
                    w.WriteElementString(k, v);
                }
            }
            w.WriteElementString("Resource", resource);
            w.WriteElementString("RequestId", requestId);
        }, ns: null);

    public static byte[] Write(S3Exception e, string resource, string requestId) =>
        Write(e.Code, e.Message, resource, requestId, e.Details);
}
