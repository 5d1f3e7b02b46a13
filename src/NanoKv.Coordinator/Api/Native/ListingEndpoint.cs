using System.Globalization;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http;
using NanoKv.Core;
using NanoKv.Metadata;

namespace NanoKv.Coordinator.Api.Native;

/// <summary>One key of the public listing.</summary>
public sealed record ListedObject(
    [property: JsonPropertyName("key")] string Key,
    [property: JsonPropertyName("size")] long Size,
    [property: JsonPropertyName("etag")] string Etag,
    [property: JsonPropertyName("version")] long Version,
    [property: JsonPropertyName("replicas")] IReadOnlyList<string> Replicas);

/// <summary>A page of the public listing; pass next_after as `after` for the next page (null: no more keys).</summary>
public sealed record ListedPage(
    [property: JsonPropertyName("keys")] List<ListedObject> Keys,
    [property: JsonPropertyName("next_after")] string? NextAfter);

/// <summary>
/// <c>GET /?list&amp;prefix=&amp;after=&amp;limit=</c>: committed keys in key order, read straight from the index.
/// Keys, prefix and cursor are percent-encoded like object URLs. Pending and tombstoned keys are not listed.
/// </summary>
public static class ListingEndpoint
{
    public const int DefaultLimit = 1000;
    public const int MaxLimit = 10_000;

    /// <summary>Hidden (pending/tombstoned) entries skipped per page at most, so one request stays bounded.</summary>
    private const int MaxSkippedPerPage = 100_000;

    private static readonly string[] Accepted = ["list", "prefix", "after", "limit"];

    /// <summary>True when the request asks for a listing (a bare "?list" query on "/").</summary>
    public static bool IsListing(HttpContext ctx) => ServerHost.RawPath(ctx) == "/" && RawQuery.Get(ctx, "list") is not null;

    public static IResult Handle(HttpContext ctx, IMetaStore store)
    {
        if (ctx.Request.Query.Keys.FirstOrDefault(k => !Accepted.Contains(k)) is string unknown)
        {
            return Bad($"unknown query parameter '{unknown}' (accepted: {string.Join(", ", Accepted)})");
        }
        if (!TryKeyParam(ctx, "prefix", out var prefix, out var error) || !TryKeyParam(ctx, "after", out var after, out error))
        {
            return Bad(error);
        }
        var limit = DefaultLimit;
        if (RawQuery.Get(ctx, "limit") is string l
            && (!int.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit < 1 || limit > MaxLimit))
        {
            return Bad($"limit must be an integer from 1 to {MaxLimit}");
        }
        return Results.Json(Page(store, prefix ?? [], after, limit));
    }

    /// <summary>Up to limit visible keys after the cursor; next_after is set when more keys may follow.</summary>
    public static ListedPage Page(IMetaStore store, byte[] prefix, byte[]? after, int limit)
    {
        var keys = new List<ListedObject>(Math.Min(limit, 256));
        var skipped = 0;
        byte[]? last = null;
        foreach (var (key, meta) in store.Scan(prefix, after))
        {
            if (keys.Count == limit)
            {
                // One more key exists: the page is full and the cursor points at its last key.
                return new ListedPage(keys, KeyCodec.Encode(last));
            }
            last = key;
            if (meta.State != ObjectState.Committed)
            {
                if (++skipped >= MaxSkippedPerPage)
                {
                    return new ListedPage(keys, KeyCodec.Encode(last)); // a long run of deleted keys: continue next page
                }
                continue;
            }
            keys.Add(new ListedObject(KeyCodec.Encode(key), meta.Size, meta.Etag, meta.Version, meta.Replicas));
        }
        return new ListedPage(keys, null);
    }

    private static bool TryKeyParam(HttpContext ctx, string name, out byte[]? key, out string error)
    {
        key = null;
        error = "";
        var raw = RawQuery.Get(ctx, name);
        if (string.IsNullOrEmpty(raw))
        {
            return true;
        }
        if (!KeyCodec.TryDecode(raw, out var k, out var e))
        {
            error = $"{name}: {e}";
            return false;
        }
        key = k;
        return true;
    }

    private static IResult Bad(string detail) => ApiError.BadRequest(ApiError.Codes.InvalidArgument, detail);
}
