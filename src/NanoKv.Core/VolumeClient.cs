using System.Diagnostics;
using System.Text.Json;

namespace NanoKv.Core;

/// <summary>Outcome of a call to a volume: success with a body, or a failure classified for retry/abort.</summary>
public sealed record CallResult(bool Ok, int Status, string Body, bool Transient)
{
    public T? As<T>() => JsonSerializer.Deserialize<T>(Body, JsonSerializerOptions.Web);

    public string Describe() => Status == 0 ? Body : $"HTTP {Status}: {Body}";
}

/// <summary>
/// The coordinator's calls to volumes. Control calls (prepare, commit, abort, delete, status) are retried
/// with exponential backoff inside a time box when the failure is transient: connection errors, timeouts,
/// 5xx (but not 507) and 429. A definite answer (4xx, 507) is returned at once.
/// </summary>
public sealed class VolumeClient(HttpClient http, TimeSpan timeBox, TimeSpan attemptTimeout)
{
    public HttpClient Http => http;

    public Task<CallResult> PrepareAsync(string url, byte[] key, string uploadId, long? expectedSize, CancellationToken ct) =>
        PostAsync($"{url}/internal/prepare?key={KeyCodec.Encode(key)}&upload_id={uploadId}" + (expectedSize is long n ? $"&expected_size={n}" : ""), ct);

    public Task<CallResult> CommitAsync(string url, byte[] key, string uploadId, long version, CancellationToken ct) =>
        PostAsync($"{url}/internal/commit?upload_id={uploadId}&key={KeyCodec.Encode(key)}&version={version}", ct);

    /// <param name="key">with version, lets the volume refuse an upload it committed before a restart</param>
    public Task<CallResult> AbortAsync(string url, string uploadId, CancellationToken ct, byte[]? key = null, long? version = null) =>
        PostAsync($"{url}/internal/abort?upload_id={uploadId}" + (key is null ? "" : $"&key={KeyCodec.Encode(key)}") + (version is long v ? $"&version={v}" : ""), ct);

    /// <param name="tombstone">false drops one replica copy without recording a delete</param>
    public Task<CallResult> DeleteAsync(string url, byte[] key, long version, CancellationToken ct, bool tombstone = true) =>
        PostAsync($"{url}/internal/delete?key={KeyCodec.Encode(key)}&version={version}" + (tombstone ? "" : "&tombstone=false"), ct);

    /// <summary>One page of a volume's blobs (or tombstones).</summary>
    public async Task<ListPage> ListAsync(string url, string? after, bool tombstones, int limit, CancellationToken ct)
    {
        var r = await SendWithRetryAsync(() => new HttpRequestMessage(HttpMethod.Get,
            $"{url}/admin/list?limit={limit}&tombstones={(tombstones ? "true" : "false")}" + (after is null ? "" : $"&after={Uri.EscapeDataString(after)}")), attemptTimeout * 4, ct);
        return r.Ok ? r.As<ListPage>()! : throw new HttpRequestException($"list on {url} failed: {r.Describe()}");
    }

    public Task<CallResult> SweepTmpAsync(string url, long safeAgeSecs, CancellationToken ct) =>
        PostAsync($"{url}/admin/sweep_tmp?safe_age_secs={safeAgeSecs}", ct);

    public Task<CallResult> PullAsync(string url, string uploadId, string from, string etag, CancellationToken ct) =>
        SendWithRetryAsync(() => new HttpRequestMessage(HttpMethod.Post, $"{url}/internal/pull?upload_id={uploadId}&from={Uri.EscapeDataString(from)}&etag={etag}"), null, ct);

    public Task<CallResult> UploadStatusAsync(string url, string uploadId, CancellationToken ct) =>
        SendWithRetryAsync(() => new HttpRequestMessage(HttpMethod.Get, $"{url}/internal/upload?upload_id={uploadId}"), attemptTimeout, ct);

    public Task<CallResult> BlobInfoAsync(string url, byte[] key, bool deep, CancellationToken ct) =>
        SendWithRetryAsync(() => new HttpRequestMessage(HttpMethod.Get, $"{url}/admin/blob?key={KeyCodec.Encode(key)}&deep={(deep ? "true" : "false")}"), null, ct);

    /// <summary>Streams one upload body into an upload prepared before (no retry: the body cannot be replayed).</summary>
    public async Task<CallResult> UploadAsync(string url, string uploadId, HttpContent content, CancellationToken ct)
    {
        using var req = new HttpRequestMessage(HttpMethod.Put, $"{url}/internal/upload?upload_id={uploadId}") { Content = content };
        return await SendOnceAsync(req, ct);
    }

    /// <summary>
    /// Streams one upload body to a volume that prepares the upload on arrival (one request instead of two).
    /// Expect: 100-continue lets the volume refuse (full, failing) before any byte of the body leaves; until
    /// then a failure is retried like a control call (transient ones inside the time box, each attempt within
    /// the attempt timeout, which is disarmed once the body flows). BodySent false: the body is still whole,
    /// so the caller may send it to another node.
    /// </summary>
    /// <param name="content">a fresh body per attempt; its argument, called when the body starts, disarms the attempt timeout</param>
    /// <param name="keepCached">false: the volume writes around its page cache (a replica that GETs do not go to first)</param>
    public async Task<(CallResult Result, bool BodySent)> UploadPreparingAsync(
        string url, string uploadId, byte[] key, long? expectedSize, Func<Action, Broadcast.TargetContent> content, CancellationToken ct, bool keepCached = true)
    {
        var uri = $"{url}/internal/upload?upload_id={uploadId}&key={KeyCodec.Encode(key)}" + (expectedSize is long n ? $"&expected_size={n}" : "");
        Broadcast.TargetContent? body = null;
        var result = await SendWithRetryAsync(
            attempt =>
            {
                body = content(() => attempt.CancelAfter(Timeout.InfiniteTimeSpan));
                var req = new HttpRequestMessage(HttpMethod.Put, uri) { Content = body };
                req.Headers.ExpectContinue = true;
                if (!keepCached)
                {
                    req.Headers.TryAddWithoutValidation(NodeHttp.CacheHeader, "0");
                }
                return req;
            },
            attemptTimeout,
            ct,
            retryable: () => !body!.Started);
        return (result, body!.Started);
    }

    private Task<CallResult> PostAsync(string url, CancellationToken ct) =>
        SendWithRetryAsync(() => new HttpRequestMessage(HttpMethod.Post, url), attemptTimeout, ct);

    private Task<CallResult> SendWithRetryAsync(Func<HttpRequestMessage> make, TimeSpan? perAttempt, CancellationToken ct) =>
        SendWithRetryAsync(_ => make(), perAttempt, ct);

    /// <param name="make">builds each attempt's request; it gets the attempt's deadline</param>
    /// <param name="retryable">false after a failed attempt: return it instead of retrying</param>
    private async Task<CallResult> SendWithRetryAsync(Func<CancellationTokenSource, HttpRequestMessage> make, TimeSpan? perAttempt, CancellationToken ct, Func<bool>? retryable = null)
    {
        var sw = Stopwatch.StartNew();
        var delay = TimeSpan.FromMilliseconds(50);
        while (true)
        {
            CallResult result;
            using (var cts = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                if (perAttempt is { } t)
                {
                    cts.CancelAfter(t);
                }
                using var req = make(cts);
                result = await SendOnceAsync(req, cts.Token);
            }
            ct.ThrowIfCancellationRequested();
            if (result.Ok || !result.Transient || sw.Elapsed + delay > timeBox || retryable?.Invoke() == false)
            {
                return result;
            }
            await Task.Delay(delay, ct);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(1).Ticks));
        }
    }

    private async Task<CallResult> SendOnceAsync(HttpRequestMessage req, CancellationToken ct)
    {
        try
        {
            using var resp = await http.SendAsync(req, HttpCompletionOption.ResponseContentRead, ct);
            var body = await resp.Content.ReadAsStringAsync(ct);
            return new CallResult(resp.IsSuccessStatusCode, (int)resp.StatusCode, body, NodeHttp.IsTransient(resp.StatusCode));
        }
        catch (HttpRequestException ex)
        {
            return new CallResult(false, 0, $"connection failed: {ex.Message}", true);
        }
        catch (OperationCanceledException)
        {
            return new CallResult(false, 0, "timed out", true);
        }
        catch (Exception ex) when (ex is TimeoutException or IOException)
        {
            return new CallResult(false, 0, $"{ex.GetType().Name}: {ex.Message}", true);
        }
    }
}
