using System.Text.Json.Serialization;

namespace NanoKv.Core;

/// <summary>Answer of a volume's upload endpoint: what it received and fsync'd.</summary>
public sealed record UploadResult(
    [property: JsonPropertyName("size")] long Size,
    [property: JsonPropertyName("etag")] string Etag);

/// <summary>Answer of GET /admin/blob.</summary>
public sealed record BlobInfo(
    [property: JsonPropertyName("exists")] bool Exists,
    [property: JsonPropertyName("size")] long Size,
    [property: JsonPropertyName("etag")] string? Etag,
    [property: JsonPropertyName("version")] long Version,
    [property: JsonPropertyName("tombstone_version")] long? TombstoneVersion)
{
    /// <summary>BLAKE3 recorded when the blob was received (cheap; `etag` is recomputed from disk with deep=true).</summary>
    [JsonPropertyName("stored_etag")]
    public string? StoredEtag { get; init; }
}

/// <summary>One entry of GET /admin/list.</summary>
public sealed record ListEntry(
    [property: JsonPropertyName("key")] string Key,
    [property: JsonPropertyName("size")] long Size,
    [property: JsonPropertyName("version")] long Version,
    [property: JsonPropertyName("tombstone")] bool Tombstone);

/// <summary>A page of GET /admin/list; pass next_after as `after` for the next page.</summary>
public sealed record ListPage(
    [property: JsonPropertyName("keys")] List<ListEntry> Keys,
    [property: JsonPropertyName("next_after")] string? NextAfter);

/// <summary>State of an upload on a volume, for idempotent retries and crash recovery.</summary>
public sealed record UploadStatus(
    [property: JsonPropertyName("upload_id")] string UploadId,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("size")] long? Size,
    [property: JsonPropertyName("etag")] string? Etag);

/// <summary>What a volume sends on join and heartbeat.</summary>
public sealed record NodeAnnounce(
    [property: JsonPropertyName("node_id")] string NodeId,
    [property: JsonPropertyName("url")] string Url,
    [property: JsonPropertyName("capacity_bytes")] long? CapacityBytes,
    [property: JsonPropertyName("free_bytes")] long? FreeBytes,
    [property: JsonPropertyName("read_url")] string? ReadUrl = null,
    [property: JsonPropertyName("handoff_socket")] string? HandoffSocket = null);

/// <summary>A volume telling the coordinator that its copy of a key failed its checksum.</summary>
public sealed record CorruptReport(
    [property: JsonPropertyName("node_id")] string NodeId,
    [property: JsonPropertyName("key")] string EncodedKey);

/// <summary>Answer of a volume's GET /healthz.</summary>
public sealed record VolumeHealth(
    [property: JsonPropertyName("status")] string Status,
    [property: JsonPropertyName("node_id")] string NodeId,
    [property: JsonPropertyName("capacity_bytes")] long CapacityBytes,
    [property: JsonPropertyName("free_bytes")] long FreeBytes,
    [property: JsonPropertyName("read_url")] string? ReadUrl = null,
    [property: JsonPropertyName("handoff_socket")] string? HandoffSocket = null);
