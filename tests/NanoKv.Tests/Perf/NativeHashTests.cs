using NanoKv.Core.Hashing;

namespace NanoKv.Tests.Perf;

/// <summary>
/// The native BLAKE3 library is what keeps hashing off the profile (issue 10: the managed package at 4 KiB
/// updates ran ~7x slower and dominated PUT CPU). These guard that the build ships it next to the servers and
/// that it gives exactly the managed package's digests, however the input is split.
/// </summary>
public class NativeHashTests
{
    [Fact]
    public void ServersShipAndLoadTheNativeLibrary()
    {
        var lib = Path.Combine(AppContext.BaseDirectory, "libnanokv_blake3.so");
        Assert.True(File.Exists(lib), $"{lib} missing: the build did not compile native BLAKE3 ({ContentHasher.NativeUnavailableReason}); CI installs gcc and librust-blake3-dev");
        Assert.Equal(HashBackend.Native, ContentHasher.Backend);
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 1)]
    [InlineData(1023, 7)]
    [InlineData(1024, 1024)]
    [InlineData(4096 * 3 + 17, 4096)]
    [InlineData(1 << 20, 65536)]
    [InlineData((1 << 20) + 5, 1000)]
    public void DigestsEqualTheManagedPackage(int length, int piece)
    {
        var data = new byte[length];
        new Random(length).NextBytes(data);
        using var hasher = ContentHasher.New();
        for (var offset = 0; offset < length; offset += piece)
        {
            hasher.Update(data.AsSpan(offset, Math.Min(piece, length - offset)));
        }
        var expected = Blake3.Hasher.Hash(data).ToString();
        Assert.Equal(expected, hasher.FinalizeHex());
        Assert.Equal(expected, ContentHasher.Hash(data));
    }

    [Fact]
    public void ShortOutputsArePrefixesOfTheDigest()
    {
        var data = "placement"u8.ToArray();
        Span<byte> eight = stackalloc byte[8];
        using var hasher = ContentHasher.New();
        hasher.Update(data);
        hasher.Finalize(eight);
        Assert.StartsWith(Convert.ToHexStringLower(eight), Blake3.Hasher.Hash(data).ToString(), StringComparison.Ordinal);
    }
}
