using System.Text;
using NanoKv.Core;

namespace NanoKv.Tests;

public class KeyCodecTests
{
    [Theory]
    [InlineData("/my%2Ffile.bin", "my/file.bin")]
    [InlineData("/a/../b", "a/../b")]
    [InlineData("/plain?x=1", "plain")]
    [InlineData("/%E2%82%AC", "€")]
    public void ParsesRawTargets(string target, string expected)
    {
        Assert.True(KeyCodec.TryParseTarget(target, out var key, out _));
        Assert.Equal(expected, Encoding.UTF8.GetString(key));
    }

    [Theory]
    [InlineData("/")]
    [InlineData("/%")]
    [InlineData("/abc%2")]
    [InlineData("/abc%zz")]
    public void RejectsBadTargets(string target) => Assert.False(KeyCodec.TryParseTarget(target, out _, out _));

    [Fact]
    public void RejectsKeysOverTheLimit()
    {
        Assert.True(KeyCodec.TryDecode(new string('k', KeyCodec.MaxKeyBytes), out _, out _));
        Assert.False(KeyCodec.TryDecode(new string('k', KeyCodec.MaxKeyBytes + 1), out _, out var error));
        Assert.Contains("1024", error);
    }

    [Fact]
    public void EncodeRoundTripsEveryByte()
    {
        var key = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        var enc = KeyCodec.Encode(key);
        Assert.True(KeyCodec.TryDecode(enc, out var back, out _));
        Assert.Equal(key, back);
        Assert.DoesNotContain('/', enc);
        Assert.DoesNotContain('\\', enc);
    }

    [Theory]
    [InlineData(".")]
    [InlineData("..")]
    [InlineData(".hidden")]
    [InlineData("../../etc/passwd")]
    public void FileNamesNeverEscapeOrHide(string raw)
    {
        var name = KeyCodec.FileName(Encoding.UTF8.GetBytes(raw));
        Assert.False(name.StartsWith('.'));
        Assert.DoesNotContain('/', name);
    }

    [Fact]
    public void LongKeysGetHashedNamesThatFitTheFilesystem()
    {
        var key = Enumerable.Repeat((byte)0xFF, KeyCodec.MaxKeyBytes).ToArray();
        var name = KeyCodec.FileName(key);
        Assert.True(KeyCodec.IsHashedName(name));
        Assert.True(name.Length < 255);
        Assert.False(KeyCodec.TryDecodeFileName(name, out _));
    }

    [Fact]
    public void BlobPathUsesTwoLevelsOfBlake3()
    {
        var key = "my/file.bin"u8.ToArray();
        var hash = KeyCodec.Hash(key);
        Assert.Equal(Path.Combine(hash[..2], hash[2..4], "my%2Ffile.bin"), KeyCodec.BlobRelativePath(key));
    }

    [Fact]
    public void ReservedRouteNamesAreRefusedAsKeys()
    {
        Assert.False(KeyCodec.TryParseTarget("/%68ealthz", out _, out var error));
        Assert.Contains("reserved", error);
        Assert.True(KeyCodec.TryParseTarget("/healthz2", out _, out _));
    }
}
