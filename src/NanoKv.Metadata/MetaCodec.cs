using System.Text.Json;

namespace NanoKv.Metadata;

/// <summary>
/// The value encoding both backends share: one format byte (1) followed by UTF-8 JSON, so the encoding can
/// evolve and a migration copies values byte for byte.
/// </summary>
public static class MetaCodec
{
    private const byte FormatV1 = 1;
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static byte[] Encode<T>(T value)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(value, Json);
        var buf = new byte[json.Length + 1];
        buf[0] = FormatV1;
        json.CopyTo(buf, 1);
        return buf;
    }

    public static T Decode<T>(byte[] value)
    {
        if (value.Length == 0 || value[0] != FormatV1)
        {
            throw new InvalidDataException($"unknown metadata format {(value.Length == 0 ? -1 : value[0])}");
        }
        return JsonSerializer.Deserialize<T>(value.AsSpan(1), Json)!;
    }

    /// <summary>Object metas are equal for compare-and-swap when state, upload id, version and pending lease match.</summary>
    public static bool SameWrite(ObjectMeta? a, ObjectMeta? b) =>
        a is null || b is null
            ? a is null && b is null
            : a.State == b.State && a.UploadId == b.UploadId && a.Version == b.Version && a.LeaseUntilMs == b.LeaseUntilMs;
}
