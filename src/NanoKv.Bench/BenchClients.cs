using System.Buffers;
using System.Diagnostics;
using System.Net;
using NanoKv.S3.SigV4;

namespace NanoKv.Bench;

/// <summary>Which front end a run loads: the native API, the S3 endpoint, or both phase by phase (with the S3/native ratio).</summary>
public enum BenchApi
{
    Native,
    S3,
    Compare,
}

/// <summary>The two requests a phase issues, through one front end; an error string instead of an exception for a failed request.</summary>
public abstract class BenchClient(HttpClient http, string name)
{
    protected HttpClient Http { get; } = http;

    /// <summary>"native" or "s3", as in the result's phase rows.</summary>
    public string Name { get; } = name;

    /// <summary>Writes `size` pattern bytes under `key` (a plain key: the client encodes it).</summary>
    public abstract Task<string?> PutAsync(string key, long size, CancellationToken ct);

    /// <summary>Reads `key` whole, checking the length.</summary>
    public abstract Task<string?> GetAsync(string key, long size, CancellationToken ct);

    /// <summary>Anything the first write needs (the S3 bucket).</summary>
    protected virtual Task PrepareAsync(CancellationToken ct) => Task.CompletedTask;

    protected abstract Task<string?> DeleteAsync(string key, CancellationToken ct);

    /// <summary>Health can say "ok" before the coordinator has probed its volumes: only an accepted write proves the
    /// cluster can take the load, so no phase starts before one. Returns how long that took.</summary>
    public async Task<TimeSpan> WaitForWritesAsync(CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        var key = $"bench-ready-{Guid.NewGuid():N}";
        string? last = "no answer";
        while (sw.Elapsed < TimeSpan.FromSeconds(60))
        {
            try
            {
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(ct);
                attempt.CancelAfter(TimeSpan.FromSeconds(10));
                await PrepareAsync(attempt.Token);
                last = await PutAsync(key, 5, attempt.Token);
                if (last is null)
                {
                    await DeleteAsync(key, ct);
                    return sw.Elapsed;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or InvalidOperationException && !ct.IsCancellationRequested)
            {
                last = ex.Message;
            }
            await Task.Delay(100, ct);
        }
        throw new TimeoutException($"the {Name} endpoint accepted no write within 60 s (last answer: {last})");
    }

    /// <summary>Drains a response body, counting bytes into a pooled buffer.</summary>
    protected static async Task<string?> DrainAsync(HttpResponseMessage r, long size, CancellationToken ct)
    {
        await using var body = await r.Content.ReadAsStreamAsync(ct);
        var buffer = ArrayPool<byte>.Shared.Rent(256 * 1024);
        long total = 0;
        try
        {
            int n;
            while ((n = await body.ReadAsync(buffer, ct)) > 0)
            {
                total += n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return total == size ? null : $"GET returned {total} bytes, expected {size}";
    }
}

/// <summary>The native API: PUT /{key} (201), GET following the 302 to a replica, or streamed through the coordinator (?proxy=1).</summary>
public sealed class NativeBenchClient(HttpClient http, string url, bool proxyGet) : BenchClient(http, "native")
{
    /// <summary>One coordinator, or several (comma-separated) taking requests in turn.</summary>
    private readonly string[] _targets = url.Split(',', StringSplitOptions.RemoveEmptyEntries);
    private int _next;

    private string Url(string key) => $"{_targets[(Interlocked.Increment(ref _next) & int.MaxValue) % _targets.Length]}/{Uri.EscapeDataString(key)}";

    public override async Task<string?> PutAsync(string key, long size, CancellationToken ct)
    {
        using var content = new PatternContent(size);
        using var r = await Http.PutAsync(Url(key), content, ct);
        return r.StatusCode == HttpStatusCode.Created ? null : $"PUT {(int)r.StatusCode} {await r.Content.ReadAsStringAsync(ct)}";
    }

    public override async Task<string?> GetAsync(string key, long size, CancellationToken ct)
    {
        using var r = await Http.GetAsync(Url(key) + (proxyGet ? "?proxy=1" : ""), HttpCompletionOption.ResponseHeadersRead, ct);
        return r.StatusCode == HttpStatusCode.OK ? await DrainAsync(r, size, ct) : $"GET {(int)r.StatusCode}";
    }

    protected override async Task<string?> DeleteAsync(string key, CancellationToken ct)
    {
        using var r = await Http.DeleteAsync(Url(key), ct);
        return r.IsSuccessStatusCode ? null : $"DELETE {(int)r.StatusCode}";
    }
}

/// <summary>
/// The S3 endpoint, path style (/bucket/key), every request SigV4-signed here with UNSIGNED-PAYLOAD (as the AWS CLI
/// signs over TLS-less endpoints when told to; the body is still MD5'd for the ETag by the server).
/// </summary>
public sealed class S3BenchClient(HttpClient http, string endpoint, string accessKey, string secretKey, string bucket) : BenchClient(http, "s3")
{
    private readonly SigV4Signer _signer = new(accessKey, secretKey);
    private readonly Uri _endpoint = new(endpoint.TrimEnd('/') + "/");

    public string Bucket => bucket;

    private HttpRequestMessage Request(HttpMethod method, string key)
    {
        var target = "/" + bucket + (key.Length > 0 ? "/" + AwsUri.Encode(key, keepSlash: true) : "");
        var uri = new Uri(_endpoint, target);
        var request = new HttpRequestMessage(method, uri);
        foreach (var (name, value) in _signer.Sign(method.Method, uri.Authority, uri.PathAndQuery))
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }
        return request;
    }

    public override async Task<string?> PutAsync(string key, long size, CancellationToken ct)
    {
        using var request = Request(HttpMethod.Put, key);
        request.Content = new PatternContent(size);
        using var r = await Http.SendAsync(request, ct);
        return r.StatusCode == HttpStatusCode.OK ? null : $"PUT {(int)r.StatusCode} {await r.Content.ReadAsStringAsync(ct)}";
    }

    public override async Task<string?> GetAsync(string key, long size, CancellationToken ct)
    {
        using var request = Request(HttpMethod.Get, key);
        using var r = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        return r.StatusCode == HttpStatusCode.OK ? await DrainAsync(r, size, ct) : $"GET {(int)r.StatusCode} {await r.Content.ReadAsStringAsync(ct)}";
    }

    protected override async Task<string?> DeleteAsync(string key, CancellationToken ct)
    {
        using var request = Request(HttpMethod.Delete, key);
        using var r = await Http.SendAsync(request, ct);
        return r.IsSuccessStatusCode ? null : $"DELETE {(int)r.StatusCode}";
    }

    /// <summary>CreateBucket; "already owned by you" is fine (a rerun against the same target).</summary>
    protected override async Task PrepareAsync(CancellationToken ct)
    {
        using var request = Request(HttpMethod.Put, "");
        using var r = await Http.SendAsync(request, ct);
        if (r.StatusCode != HttpStatusCode.OK && r.StatusCode != HttpStatusCode.Conflict)
        {
            throw new InvalidOperationException($"CreateBucket {bucket}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync(ct)}");
        }
    }
}
