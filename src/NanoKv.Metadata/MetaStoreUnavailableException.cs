namespace NanoKv.Metadata;

/// <summary>
/// The metadata database could not be reached (or kept failing transiently) within the retry time box. The
/// HTTP layer answers 503 for it: the request may be retried once the database is back.
/// </summary>
public sealed class MetaStoreUnavailableException : Exception
{
    public MetaStoreUnavailableException()
    {
    }

    public MetaStoreUnavailableException(string message)
        : base(message)
    {
    }

    public MetaStoreUnavailableException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
