using System.Security.Cryptography;
using System.Text;
using NanoKv.Coordinator.Core;
using NanoKv.Metadata;

namespace NanoKv.Tests.Infrastructure;

/// <summary>Direct calls into the transport-free <see cref="ObjectStore"/> shared by the store-level S3 tests.</summary>
public static class StoreCalls
{
    public static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(60);

    public static byte[] Key(string k) => Encoding.UTF8.GetBytes(k);

    /// <summary>n bytes, the same for the same seed.</summary>
    public static byte[] Bytes(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    /// <summary>PutObject with the MD5 ETag an S3 front end would compute.</summary>
    public static Task<StoreResult<S3ObjectRecord>> PutObjectAsync(ObjectStore s, string bucket, string key, byte[] body, WriteCondition condition = WriteCondition.Overwrite, string? ifMatch = null) =>
        s.PutObjectAsync(new ObjectPut(bucket, Key(key), new MemoryStream(body), body.Length)
        {
            Condition = condition,
            IfMatchEtag = ifMatch,
            Etag = () => Convert.ToHexStringLower(MD5.HashData(body)),
        }, CancellationToken.None).WaitAsync(CallTimeout);

    /// <summary>PutObject that must succeed; the failure names the store's reason.</summary>
    public static async Task<S3ObjectRecord> PutObjectOkAsync(ObjectStore s, string bucket, string key, byte[] body)
    {
        var r = await PutObjectAsync(s, bucket, key, body);
        Assert.True(r.Ok, $"PutObject {bucket}/{key}: {r.Error?.Kind} {r.Error?.Detail}");
        return r.Value!;
    }

    public static Task Until(Func<bool> condition, string what) => TestCluster.WaitUntilAsync(condition, CallTimeout, what);
}
