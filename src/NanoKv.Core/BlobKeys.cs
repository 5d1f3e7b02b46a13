using System.Text;

namespace NanoKv.Core;

/// <summary>
/// Volume keys of the blobs behind S3 objects and multipart parts. They start with byte 0x01, which the
/// native API refuses, so they never collide with native keys; each write gets a fresh key (its version in
/// it), so an overwrite's new blob and the old one coexist until the switch. The bucket and key are kept in
/// the blob key so a rebuild from volumes alone can bring S3 objects back.
/// </summary>
public static class BlobKeys
{
    /// <summary>First byte of every internal blob key.</summary>
    public const byte InternalMarker = 0x01;

    private static readonly byte[] ObjectPrefix = [InternalMarker, .. "s3/"u8];
    private static readonly byte[] PartPrefix = [InternalMarker, .. "mp/"u8];
    private static readonly byte[] ManifestPrefix = [InternalMarker, .. "mf/"u8];

    public static bool IsInternal(ReadOnlySpan<byte> key) => key.Length > 0 && key[0] == InternalMarker;

    /// <summary>0x01 "s3/" bucket "/" version (16 hex) "/" key.</summary>
    public static byte[] ForObject(string bucket, byte[] key, long version) =>
        [.. ObjectPrefix, .. Encoding.UTF8.GetBytes($"{bucket}/{version:x16}/"), .. key];

    /// <summary>0x01 "mp/" upload id "/" part (5 digits) "/" version (16 hex).</summary>
    public static byte[] ForPart(string uploadId, int part, long version) =>
        [.. PartPrefix, .. Encoding.UTF8.GetBytes($"{uploadId}/{part:D5}/{version:x16}")];

    /// <summary>
    /// 0x01 "mf/" bucket "/" version (16 hex) "/" key: the manifest a completed multipart upload leaves on the
    /// volumes (parts, ETag, attributes) so rebuild can bring the object back.
    /// </summary>
    public static byte[] ForManifest(string bucket, byte[] key, long version) =>
        [.. ManifestPrefix, .. Encoding.UTF8.GetBytes($"{bucket}/{version:x16}/"), .. key];

    /// <summary>Bucket, key and version of an object blob key; false for anything else.</summary>
    public static bool TryParseObject(ReadOnlySpan<byte> blobKey, out string bucket, out byte[] key, out long version) =>
        TryParse(ObjectPrefix, blobKey, out bucket, out key, out version);

    /// <summary>Bucket, key and version of a multipart manifest's blob key; false for anything else.</summary>
    public static bool TryParseManifest(ReadOnlySpan<byte> blobKey, out string bucket, out byte[] key, out long version) =>
        TryParse(ManifestPrefix, blobKey, out bucket, out key, out version);

    private static bool TryParse(ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> blobKey, out string bucket, out byte[] key, out long version)
    {
        bucket = "";
        key = [];
        version = 0;
        if (!blobKey.StartsWith(prefix))
        {
            return false;
        }
        var rest = blobKey[prefix.Length..];
        var slash = rest.IndexOf((byte)'/');
        if (slash <= 0 || rest.Length < slash + 18 || rest[slash + 17] != (byte)'/')
        {
            return false;
        }
        if (!long.TryParse(Encoding.ASCII.GetString(rest.Slice(slash + 1, 16)), System.Globalization.NumberStyles.HexNumber, null, out version))
        {
            return false;
        }
        bucket = Encoding.UTF8.GetString(rest[..slash]);
        key = rest[(slash + 18)..].ToArray();
        return key.Length > 0;
    }

    /// <summary>The record key of an S3 object: bucket "/" key.</summary>
    public static byte[] ObjectRecordKey(string bucket, ReadOnlySpan<byte> key) => [.. Encoding.UTF8.GetBytes(bucket + "/"), .. key];

    /// <summary>The record key of a multipart upload: bucket "/" upload id.</summary>
    public static byte[] UploadRecordKey(string bucket, string uploadId) => Encoding.UTF8.GetBytes($"{bucket}/{uploadId}");

    /// <summary>The record key of a part: upload id "/" part (5 digits); the prefix upload id "/" lists them in order.</summary>
    public static byte[] PartRecordKey(string uploadId, int part) => Encoding.UTF8.GetBytes($"{uploadId}/{part:D5}");
}
