using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Http;
using NanoKv.Coordinator.Core;
using NanoKv.Core;

namespace NanoKv.Coordinator.Api.Native;

/// <summary>The native object API, <c>PUT/GET/HEAD/DELETE /{key}</c>: HTTP in, one store call, HTTP out.</summary>
public sealed class NativeObjectApi(ObjectStore store)
{
    /// <summary>Handles one object request (the key comes from the raw target, so "." and ".." survive).</summary>
    public async Task<IResult> HandleAsync(HttpContext ctx)
    {
        if (!KeyCodec.TryParseTarget(ServerHost.RawTarget(ctx), out var key, out var error))
        {
            return ApiError.BadRequest(ApiError.Codes.InvalidKey, error);
        }
        if (BlobKeys.IsInternal(key))
        {
            return ApiError.BadRequest(ApiError.Codes.InvalidKey, "keys starting with byte 0x01 are reserved for the blobs behind S3 objects");
        }
        var method = ctx.Request.Method;
        using var activity = ServerHost.Activity.StartActivity(method + " object");
        activity?.SetTag("nanokv.key", KeyCodec.Display(key));
        var started = Stopwatch.GetTimestamp();
        var result = HttpMethods.IsPut(method) ? await PutAsync(ctx, key)
            : HttpMethods.IsDelete(method) ? await DeleteAsync(key, ctx.RequestAborted)
            : await GetAsync(ctx, key, HttpMethods.IsHead(method));
        var status = result is IStatusCodeHttpResult { StatusCode: int s } ? s : ctx.Response.StatusCode;
        var tags = new TagList { { "method", method }, { "status", status } };
        ServerHost.Requests.Add(1, tags);
        ServerHost.RequestDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds, tags);
        return result;
    }

    /// <summary>Write-once PUT streamed to every replica at once.</summary>
    private async Task<IResult> PutAsync(HttpContext ctx, byte[] key)
    {
        ServerHost.AllowLargeBody(ctx);
        var put = await store.PutAsync(new PutRequest(key, ctx.Request.Body, ctx.Request.ContentLength), ctx.RequestAborted);
        if (!put.Ok)
        {
            await DrainUnreadBodyAsync(ctx);
            return ToResult(put.Error!);
        }
        var meta = put.Value!;
        ctx.Response.Headers.ETag = $"\"{meta.Etag}\"";
        return Results.Json(new { key = KeyCodec.Encode(key), size = meta.Size, etag = meta.Etag, replicas = meta.Replicas, version = meta.Version }, statusCode: 201);
    }

    /// <summary>
    /// A PUT refused before its whole body was read (a full disk at prepare, no node left): read and drop what the
    /// client still sends, up to DrainBytes or DrainTime, before answering. Closed with unread input, the
    /// connection is reset, and a client still sending can meet the reset before it reads the answer (seen in CI
    /// as "Broken pipe" instead of the 507). Past the bound the connection closes as before.
    /// </summary>
    private static async Task DrainUnreadBodyAsync(HttpContext ctx)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
            deadline.CancelAfter(DrainTime);
            for (long drained = 0; drained < DrainBytes;)
            {
                var n = await ctx.Request.Body.ReadAsync(buffer, deadline.Token);
                if (n == 0)
                {
                    return;
                }
                drained += n;
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or BadHttpRequestException or InvalidOperationException)
        {
            // The client went away, stalled past the bound, or the body cannot be read any more: the close stands.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private const long DrainBytes = 64L << 20;
    private static readonly TimeSpan DrainTime = TimeSpan.FromSeconds(3);

    /// <summary>GET: 302 to a live replica (the coordinator stays off the data path) or, in proxy mode, stream it.</summary>
    private async Task<IResult> GetAsync(HttpContext ctx, byte[] key, bool headOnly)
    {
        var located = store.Locate(key);
        if (!located.Ok)
        {
            return ToResult(located.Error!);
        }
        var plan = located.Value!;
        ctx.Response.Headers.ETag = $"\"{plan.Meta.Etag}\"";
        if (headOnly)
        {
            ctx.Response.ContentLength = plan.Meta.Size;
            ctx.Response.Headers.AcceptRanges = "bytes";
            ctx.Response.ContentType = "application/octet-stream";
            return Results.Empty;
        }
        if (plan.Candidates.Count == 0)
        {
            return ApiError.Unavailable(ApiError.Codes.Unavailable, $"no live replica of {KeyCodec.Display(key)} (replicas: {string.Join(", ", plan.Meta.Replicas)})");
        }
        // The keys "." and ".." cannot survive a redirect: HTTP clients fold them into "/" before asking the volume.
        var proxy = store.Settings.ProxyGet || ctx.Request.Query["proxy"] is var q && (q == "1" || q == "true") || key is [(byte)'.'] or [(byte)'.', (byte)'.'];
        if (!proxy)
        {
            var plainGet = ctx.Request.Headers.Range.Count == 0 && !ctx.Request.Headers.Keys.Any(h => h.StartsWith("If-", StringComparison.OrdinalIgnoreCase));
            return Results.Redirect(store.DirectUrl(plan, plan.Candidates[0], plainGet));
        }
        var failed = await store.ReadAsync(plan, ctx.Request.Headers.Range.Count > 0 ? new ByteRange(ctx.Request.Headers.Range.ToString()) : null, new ResponseSink(ctx), ctx.RequestAborted);
        return failed is null || ctx.Response.HasStarted ? Results.Empty : ToResult(failed);
    }

    private async Task<IResult> DeleteAsync(byte[] key, CancellationToken ct)
    {
        await store.DeleteAsync(key, ct);
        return Results.NoContent();
    }

    /// <summary>The native API's status and JSON code for each store failure.</summary>
    public static IResult ToResult(StoreError e) => e.Kind switch
    {
        StoreErrorKind.NotFound => ApiError.NotFoundResult(e.Detail),
        StoreErrorKind.KeyExists => ApiError.Conflict(ApiError.Codes.KeyExists, e.Detail),
        StoreErrorKind.WriteInProgress => ApiError.Conflict(ApiError.Codes.WriteInProgress, e.Detail),
        StoreErrorKind.PreconditionFailed => ApiError.Result(412, ApiError.Codes.KeyExists, e.Detail),
        StoreErrorKind.InsufficientNodes => ApiError.Unavailable(ApiError.Codes.InsufficientNodes, e.Detail),
        StoreErrorKind.InsufficientStorage => ApiError.Result(507, ApiError.Codes.InsufficientStorage, e.Detail),
        StoreErrorKind.TooLarge => ApiError.Result(413, ApiError.Codes.InvalidArgument, e.Detail),
        StoreErrorKind.SizeMismatch => ApiError.Result(413, ApiError.Codes.SizeMismatch, e.Detail),
        StoreErrorKind.UploadIncomplete or StoreErrorKind.InvalidBody => ApiError.BadRequest(ApiError.Codes.UploadIncomplete, e.Detail),
        StoreErrorKind.ChecksumMismatch => ApiError.Result(502, ApiError.Codes.ChecksumMismatch, e.Detail),
        StoreErrorKind.ReplicaFailed => ApiError.Unavailable(ApiError.Codes.ReplicaFailed, e.Detail),
        _ => ApiError.Unavailable(ApiError.Codes.Unavailable, e.Detail),
    };

    /// <summary>Streams a store read into the HTTP response.</summary>
    private sealed class ResponseSink(HttpContext ctx) : IObjectSink
    {
        public bool HasStarted => ctx.Response.HasStarted;

        public Stream Body => ctx.Response.Body;

        public PipeWriter? Writer => ctx.Response.BodyWriter;

        public IRawResponse? Raw => RawHttpResponse.For(ctx);

        public void Begin(int status, long? length, string? contentRange)
        {
            ctx.Response.StatusCode = status;
            ctx.Response.ContentLength = length;
            ctx.Response.ContentType = "application/octet-stream";
            ctx.Response.Headers.AcceptRanges = "bytes";
            if (contentRange is not null)
            {
                ctx.Response.Headers.ContentRange = contentRange;
            }
        }

        public void Reset() => ctx.Response.Clear();

        public void Abort() => ctx.Abort();
    }
}
