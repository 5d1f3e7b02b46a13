using System.Diagnostics;
using NanoKv.Volume;

namespace NanoKv.Tests;

/// <summary>The volume's folders are placed for cheap inode allocation and never lose what they hold.</summary>
public class DirPlacementTests
{
    [Fact]
    public async Task AFreshVolumeGetsSpreadFoldersAndARestartKeepsTheirContents()
    {
        var root = Path.Combine(Path.GetTempPath(), "nanokv-tests", "placement-" + Guid.NewGuid().ToString("N"));
        try
        {
            var store = new BlobStore(root);
            Assert.Empty(Directory.GetFileSystemEntries(store.TmpDir));
            Assert.Equal(["blobs", "tmp", "tombs"], Directory.GetDirectories(root).Select(Path.GetFileName).Order(StringComparer.Ordinal));

            // Upload leftovers in tmp/ and blobs survive a restart: only an empty folder is replaced.
            await File.WriteAllTextAsync(Path.Combine(store.TmpDir, "left.data"), "x");
            Directory.CreateDirectory(Path.Combine(store.BlobsDir, "aa"));
            var again = new BlobStore(root);
            Assert.True(File.Exists(Path.Combine(again.TmpDir, "left.data")));
            Assert.True(Directory.Exists(Path.Combine(again.BlobsDir, "aa")));

            // On ext4 the data root and blobs/ carry the Orlov top-directory hint ("T" in lsattr).
            if (LsAttr(root) is { } attrs)
            {
                Assert.Contains('T', attrs);
            }
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>The attribute letters of a folder, or null where lsattr or the filesystem does not support them.</summary>
    private static string? LsAttr(string dir)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo("lsattr", ["-d", dir]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
            var output = p.StandardOutput.ReadToEnd();
            p.WaitForExit(10_000);
            return p.ExitCode == 0 ? output.Split(' ')[0] : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
