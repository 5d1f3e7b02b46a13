using System.Globalization;
using System.Text.Json.Serialization;

namespace NanoKv.Ops;

/// <summary>Everything an ops command was asked to do; also the body of POST /admin/jobs in live mode.</summary>
public sealed record OpsOptions
{
    [JsonPropertyName("command")]
    public string Command { get; init; } = "";

    /// <summary>Nodes as given: "URL" or "id=URL". Empty: the index's (or the live coordinator's) known nodes.</summary>
    [JsonPropertyName("nodes")]
    public List<string> Nodes { get; init; } = [];

    [JsonPropertyName("deep")]
    public bool Deep { get; init; }

    [JsonPropertyName("dry_run")]
    public bool DryRun { get; init; }

    [JsonPropertyName("concurrency")]
    public int Concurrency { get; init; } = 16;

    [JsonPropertyName("concurrency_per_node")]
    public int ConcurrencyPerNode { get; init; } = 4;

    /// <summary>Target replica count; null: each key's recorded replica count.</summary>
    [JsonPropertyName("replicas")]
    public int? Replicas { get; init; }

    [JsonPropertyName("tombstone_ttl_secs")]
    public long TombstoneTtlSecs { get; init; } = 7 * 86400;

    [JsonPropertyName("purge_tombstone_meta")]
    public bool PurgeTombstoneMeta { get; init; }

    [JsonPropertyName("delete_extraneous")]
    public bool DeleteExtraneous { get; init; }

    [JsonPropertyName("purge_orphans")]
    public bool PurgeOrphans { get; init; }

    [JsonPropertyName("sweep_tmp_age_secs")]
    public long SweepTmpAgeSecs { get; init; } = 3600;

    /// <summary>gc: abort S3 multipart uploads started longer ago than this.</summary>
    [JsonPropertyName("upload_ttl_secs")]
    public long UploadTtlSecs { get; init; } = 7 * 86400;

    /// <summary>Fingerprint of what the run does, so a re-run with the same arguments finds its journal.</summary>
    public string Fingerprint()
    {
        var text = string.Join('|', Command, string.Join(',', Nodes.Order(StringComparer.Ordinal)), Deep, Replicas, TombstoneTtlSecs,
            PurgeTombstoneMeta, DeleteExtraneous, PurgeOrphans, SweepTmpAgeSecs, UploadTtlSecs);
        return NanoKv.Core.KeyCodec.Hash(System.Text.Encoding.UTF8.GetBytes(text))[..12];
    }

    /// <summary>Parses "7d", "1h", "30m", "45s" or plain seconds.</summary>
    public static long ParseDuration(string text)
    {
        text = text.Trim();
        if (text.Length == 0)
        {
            throw new FormatException("empty duration");
        }
        var unit = char.ToLowerInvariant(text[^1]);
        var multiplier = unit switch
        {
            'd' => 86400L,
            'h' => 3600L,
            'm' => 60L,
            's' => 1L,
            _ => 0L,
        };
        var number = multiplier == 0 ? text : text[..^1];
        if (!long.TryParse(number, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) || n < 0)
        {
            throw new FormatException($"'{text}' is not a duration like 7d, 1h, 30m or 45s");
        }
        return n * (multiplier == 0 ? 1 : multiplier);
    }
}
