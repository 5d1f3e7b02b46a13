using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Http;
using NanoKv.Core;
using NanoKv.S3;
using NanoKv.S3.SigV4;
using NanoKv.S3.Xml;

namespace NanoKv.Coordinator.Api.S3;

/// <summary>One S3 request: the HTTP context, its bucket and key (path or virtual-host style), query, and who signed it.</summary>
public sealed class S3Context(HttpContext http, string requestId)
{
    public HttpContext Http { get; } = http;

    public string RequestId { get; } = requestId;

    public HttpRequest Request => Http.Request;

    public HttpResponse Response => Http.Response;

    public CancellationToken Aborted => Http.RequestAborted;

    public string Method => Request.Method;

    /// <summary>The path as sent (percent-encoded), without the query.</summary>
    public string RawPath { get; private set; } = "/";

    public string RawQuery { get; private set; } = "";

    public List<KeyValuePair<string, string>> Query { get; private set; } = [];

    /// <summary>Empty for service-level requests (ListBuckets).</summary>
    public string Bucket { get; private set; } = "";

    /// <summary>The object key (UTF-8 string as S3 defines it); empty for bucket-level requests.</summary>
    public string Key { get; private set; } = "";

    public byte[] KeyBytes => Encoding.UTF8.GetBytes(Key);

    public SigV4Auth Auth { get; set; } = null!;

    public string User => Auth.AccessKey;

    /// <summary>The resource named in error documents: "/bucket/key".</summary>
    public string Resource => Bucket.Length == 0 ? "/" : Key.Length == 0 ? "/" + Bucket : $"/{Bucket}/{Key}";

    /// <summary>Splits the raw target into bucket and key: "bucket.domain" hosts are virtual-host style, all others path style.</summary>
    public void Parse(IReadOnlyList<string> domains)
    {
        var raw = ServerHost.RawTarget(Http);
        var q = raw.IndexOf('?', StringComparison.Ordinal);
        (RawPath, RawQuery) = q < 0 ? (raw, "") : (raw[..q], raw[(q + 1)..]);
        if (!RawPath.StartsWith('/'))
        {
            throw new S3Exception(S3ErrorCode.InvalidRequest, "The request target must be an absolute path.");
        }
        Query = AwsUri.ParseQuery(RawQuery);
        var path = AwsUri.Decode(RawPath, plusIsSpace: false);
        var host = Request.Host.Host.ToLowerInvariant();
        var vhost = domains.Select(d => "." + d.ToLowerInvariant()).FirstOrDefault(d => host.EndsWith(d, StringComparison.Ordinal) && host.Length > d.Length);
        if (vhost is not null)
        {
            Bucket = host[..^vhost.Length];
            Key = path[1..];
            return;
        }
        var slash = path.IndexOf('/', 1);
        (Bucket, Key) = slash < 0 ? (path[1..], "") : (path[1..slash], path[(slash + 1)..]);
    }

    public bool Has(string name) => Query.Any(p => p.Key == name);

    public string? Q(string name) => Query.FirstOrDefault(p => p.Key == name).Value;

    public string? Header(string name) => Request.Headers.TryGetValue(name, out var v) ? v.ToString() : null;

    /// <summary>Parses an integer query parameter within bounds (InvalidArgument otherwise); null when absent.</summary>
    public int? IntQ(string name, int min, int max)
    {
        var v = Q(name);
        if (v is null)
        {
            return null;
        }
        if (!int.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n) || n < min)
        {
            throw new S3Exception(S3ErrorCode.InvalidArgument, $"{name} must be an integer of at least {min}.") { Details = [new("ArgumentName", name), new("ArgumentValue", v)] };
        }
        return Math.Min(n, max);
    }

    public SigV4Request ToSigV4Request() => new(Method, RawPath, RawQuery, Header);

    public async Task WriteXmlAsync(byte[] xml, int status = 200)
    {
        Response.StatusCode = status;
        Response.ContentType = S3Xml.ContentType;
        Response.ContentLength = xml.Length;
        await Response.Body.WriteAsync(xml, Aborted);
    }

    /// <summary>The error document (HEAD gets the status only, as S3 answers).</summary>
    public async Task WriteErrorAsync(S3Exception e)
    {
        if (Response.HasStarted)
        {
            Http.Abort();
            return;
        }
        var id = Response.Headers["x-amz-request-id"];
        Response.Clear();
        Response.Headers["x-amz-request-id"] = id;
        Response.Headers["x-amz-id-2"] = id;
        if (Request.Headers.Expect.ToString().Contains("100-continue", StringComparison.OrdinalIgnoreCase) && Request.ContentLength is not 0)
        {
            // A client that sent Expect: 100-continue may hold its body back once it sees a final status (botocore does);
            // reusing the connection would then read its next request as that body. Close it (RFC 7231 5.1.1).
            Response.Headers.Connection = "close";
        }
        if (e.Status == 503)
        {
            Response.Headers.RetryAfter = "1"; // every 503 here is transient: metadata database, replicas, a concurrent write
        }
        if (e.Code == S3ErrorCode.InvalidRange && e.Details.FirstOrDefault(d => d.Key == "ActualObjectSize").Value is { } size)
        {
            Response.Headers.ContentRange = $"bytes */{size}";
        }
        if (HttpMethods.IsHead(Method))
        {
            Response.StatusCode = e.Status;
            return;
        }
        await WriteXmlAsync(S3ErrorDocument.Write(e, Resource, RequestId), e.Status);
    }
}
