using System.IO.Pipelines;
using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Coordinator.Core;

/// <summary>Tunables of the data path.</summary>
public sealed record DataPathSettings
{
    public int Replicas { get; init; } = 3;

    /// <summary>Proxy GET bodies through the coordinator instead of redirecting to a volume.</summary>
    public bool ProxyGet { get; init; }

    /// <summary>How long control calls (prepare/commit/abort/delete) keep retrying transient failures.</summary>
    public TimeSpan RetryTimeBox { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Deadline of one control call attempt (a stalled volume must not hang a PUT).</summary>
    public TimeSpan AttemptTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>A replica that accepts no upload bytes (or does not answer after the last byte) for this long fails the PUT.</summary>
    public TimeSpan UploadIdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long recovery waits for an unreachable replica before treating its commit as failed.</summary>
    public TimeSpan RecoveryGiveUp { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Lease of a pending write: renewed while the PUT runs; once it lapses (the coordinator died) any
    /// coordinator's sweeper claims and resolves the write.
    /// </summary>
    public TimeSpan PendingLease { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>This coordinator's id, recorded as the owner of its pending writes (stable across restarts: kept in the state folder).</summary>
    public string CoordinatorId { get; init; } = "coord-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>How often the sweeper looks for lapsed pending writes (and the retry pace of unresolved ones).</summary>
    public TimeSpan SweepInterval => TimeSpan.FromMilliseconds(Math.Clamp(PendingLease.TotalMilliseconds / 4, 100, 2000));
}

/// <summary>Why a store operation did not succeed; each front end maps it to its own status and error format.</summary>
public enum StoreErrorKind
{
    NotFound,
    KeyExists,
    WriteInProgress,
    PreconditionFailed,
    InsufficientNodes,
    InsufficientStorage,
    TooLarge,
    SizeMismatch,
    UploadIncomplete,

    /// <summary>The body stream threw <see cref="BodyRejectedException"/> (e.g. an S3 chunk signature or checksum failed).</summary>
    InvalidBody,
    ReplicaFailed,
    ChecksumMismatch,
    Unavailable,
    NoSuchBucket,

    /// <summary>CreateBucket of a name the caller already owns.</summary>
    BucketOwnedByYou,

    /// <summary>CreateBucket of a name another user owns.</summary>
    BucketExists,
    BucketNotEmpty,
    InvalidBucketName,
    AccessDenied,
    NoSuchUpload,
    InvalidPart,
    InvalidPartOrder,
    EntityTooSmall,
    InvalidRange,
}

/// <summary>A failed store operation: what went wrong, in a sentence, and the exception behind it when there is one.</summary>
public sealed record StoreError(StoreErrorKind Kind, string Detail, Exception? Cause = null);

/// <summary>
/// Thrown by a body stream that decodes or checks what the client sent (an S3 chunk signature, a trailing
/// checksum): the write is aborted and the front end reports the code and message.
/// </summary>
public sealed class BodyRejectedException(string code, string message) : Exception(message)
{
    /// <summary>The front end's own error code, e.g. S3's "SignatureDoesNotMatch" or "BadDigest".</summary>
    public string Code { get; } = code;
}

/// <summary>Either a value or a <see cref="StoreError"/>.</summary>
public readonly record struct StoreResult<T>(T? Value, StoreError? Error)
    where T : class
{
    public bool Ok => Error is null;

    public static implicit operator StoreResult<T>(T value) => new(value, null);

    public static implicit operator StoreResult<T>(StoreError error) => new(null, error);
}

/// <summary>What a write must find at its key before it may proceed.</summary>
public enum WriteCondition
{
    /// <summary>Native API: write-once; an existing committed key is a conflict.</summary>
    CreateOnly,

    /// <summary>S3 PutObject: replaces whatever is there, atomically.</summary>
    Overwrite,

    /// <summary>S3 If-None-Match: * — only if the key does not exist (412 otherwise, race-free).</summary>
    IfNoneMatch,

    /// <summary>S3 If-Match: etag — compare-and-swap against the current object's ETag.</summary>
    IfMatch,
}

/// <summary>One PUT: the body is read once, hashed, and streamed to every replica.</summary>
public sealed record PutRequest(byte[] Key, Stream Body, long? Length)
{
    public WriteCondition Condition { get; init; } = WriteCondition.CreateOnly;

    /// <summary>
    /// Runs when every replica holds the bytes and before anything is committed: the front end checks what
    /// only it knows (the S3 MD5 against Content-MD5, finished while the volumes synced); an error aborts the write.
    /// </summary>
    public Func<CopyResult, ValueTask<StoreError?>>? BeforeCommit { get; init; }

    /// <summary>
    /// The caller makes a synced metadata write after this one before anyone hears yes (the S3 object or part record
    /// naming this blob), so the commit's own WAL sync is left to it: one WAL is synced in order, so that later sync
    /// makes this commit durable too. A crash before it leaves the write unacknowledged and pending (recovery settles it).
    /// </summary>
    public bool SyncedByNextWrite { get; init; }
}

/// <summary>Where a committed object can be read: its metadata and the replicas to try, best first.</summary>
public sealed record ReadPlan(byte[] Key, ObjectMeta Meta, IReadOnlyList<ReplicaLocation> Candidates);

/// <summary>A replica of an object on a volume: its node and URL; ReadUrl is its sendfile read port for plain full GETs (null: none); HandoffSocket its unix socket for read handoffs (null: none).</summary>
public sealed record ReplicaLocation(string NodeId, string Url, string? ReadUrl = null, string? HandoffSocket = null);

/// <summary>A byte range to read, as the HTTP Range header value a volume understands ("bytes=a-b", "bytes=-n").</summary>
public readonly record struct ByteRange(string Header)
{
    /// <summary>Bytes start..end, inclusive.</summary>
    public static ByteRange Of(long start, long end) => new($"bytes={start}-{end}");
}

/// <summary>
/// Where a read streams to (an HTTP response, in practice). The store calls Begin once a replica answered,
/// then writes Body; if a replica fails before anything was sent it calls Reset and tries the next one.
/// </summary>
public interface IObjectSink
{
    /// <summary>True once bytes or headers have gone to the client: failing over is no longer possible.</summary>
    bool HasStarted { get; }

    Stream Body { get; }

    /// <summary>The response's own pipe, when there is one: a relay reads into its memory instead of a buffer of its own.</summary>
    PipeWriter? Writer { get; }

    /// <summary>The client's connection, when the whole response may be written to it directly (see SpliceRelay); null otherwise.</summary>
    IRawResponse? Raw { get; }

    /// <summary>A replica answered: status 200 or 206, the body length and, for 206, the Content-Range value.</summary>
    void Begin(int status, long? length, string? contentRange);

    /// <summary>Nothing reached the client yet; forget what Begin set.</summary>
    void Reset();

    /// <summary>Wrong or missing bytes were already sent: the client must see a failure, not a normal end.</summary>
    void Abort();
}

/// <summary>One replica slot of a PUT: the node that took (or last refused) the body and its answer. Unplaced: no node would take it.</summary>
internal sealed record SlotUpload(string Node, CallResult Call, bool Unplaced, IReadOnlyList<string> Failures);
