using System.IO.Pipelines;
using NanoKv.Coordinator.Core;
using NanoKv.Core;

namespace NanoKv.Coordinator.Api.S3;

/// <summary>Streams store reads into an S3 response whose status and headers the front end has already set.</summary>
public sealed class S3ResponseSink(S3Context s3) : IObjectSink
{
    public bool HasStarted => s3.Response.HasStarted;

    public Stream Body => s3.Response.Body;

    public PipeWriter? Writer => s3.Response.BodyWriter;

    public IRawResponse? Raw => RawHttpResponse.For(s3.Http);

    public void Begin(int status, long? length, string? contentRange)
    {
    }

    public void Reset()
    {
    }

    /// <summary>Bytes already went out: cut the connection so the client sees a failed transfer, never a short object.</summary>
    public void Abort() => s3.Http.Abort();
}
