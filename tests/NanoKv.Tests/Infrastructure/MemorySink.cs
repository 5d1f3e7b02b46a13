using NanoKv.Coordinator.Core;

namespace NanoKv.Tests.Infrastructure;

/// <summary>A store read's sink that keeps the bytes in memory (no HTTP response behind it).</summary>
public sealed class MemorySink : IObjectSink
{
    public MemoryStream Buffer { get; } = new();

    public bool Aborted { get; private set; }

    public bool HasStarted => Buffer.Length > 0;

    public Stream Body => Buffer;

    public System.IO.Pipelines.PipeWriter? Writer => null;

    public NanoKv.Core.IRawResponse? Raw => null;

    public void Begin(int status, long? length, string? contentRange)
    {
    }

    public void Reset() => Buffer.SetLength(0);

    public void Abort() => Aborted = true;
}
