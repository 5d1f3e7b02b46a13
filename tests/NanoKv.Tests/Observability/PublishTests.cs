using System.Diagnostics;
using System.Net;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Observability;

/// <summary>
/// scripts/publish.sh's self-contained single-file binaries start a cluster that passes PUT/GET/DELETE.
/// Opt-in (NANOKV_TEST_PUBLISH=1): two self-contained publishes take minutes on a busy 2-core machine.
/// </summary>
public sealed class PublishTests
{
    [Fact]
    public async Task Published_binaries_run_a_cluster()
    {
        if (Environment.GetEnvironmentVariable("NANOKV_TEST_PUBLISH") != "1")
        {
            return; // opt-in, see the summary
        }
        var repo = PromText.RepoRoot();
        var root = TempDir.Create("publish");
        var children = new List<Process>();
        try
        {
            var dist = Path.Combine(root, "dist");
            using (var publish = Process.Start(new ProcessStartInfo("bash", [Path.Combine(repo, "scripts", "publish.sh"), dist]) { WorkingDirectory = repo })!)
            {
                await publish.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(20));
                Assert.Equal(0, publish.ExitCode);
            }
            Assert.True(new FileInfo(Path.Combine(dist, "coord")).Length > 10_000_000, "coord is not a self-contained single file");
            var ports = Enumerable.Range(0, 3).Select(_ => TestCluster.FreePort()).ToArray();
            var coordPort = TestCluster.FreePort();
            var coordUrl = $"http://127.0.0.1:{coordPort}";
            for (var i = 0; i < 2; i++)
            {
                children.Add(Start(Path.Combine(dist, "volume"), root, "--data", Path.Combine(root, $"vol{i}"), "--port", $"{ports[i]}", "--coordinator", coordUrl, "--heartbeat-ms", "200"));
            }
            children.Add(Start(Path.Combine(dist, "coord"), root, "serve", "--db", Path.Combine(root, "index"), "--port", $"{coordPort}", "--replicas", "2"));
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
            await TestCluster.WaitUntilAsync(
                async () =>
                {
                    try
                    {
                        return (await http.GetStringAsync(coordUrl + "/healthz")).Contains("\"alive_nodes\":2", StringComparison.Ordinal);
                    }
                    catch (HttpRequestException)
                    {
                        return false;
                    }
                },
                TimeSpan.FromSeconds(60),
                "published coordinator with two alive volumes");
            var body = System.Security.Cryptography.RandomNumberGenerator.GetBytes(200_000);
            using (var put = await http.PutAsync(coordUrl + "/published/key", new ByteArrayContent(body)))
            {
                Assert.Equal(HttpStatusCode.Created, put.StatusCode);
            }
            Assert.Equal(body, await http.GetByteArrayAsync(coordUrl + "/published/key"));
            using (var del = await http.DeleteAsync(coordUrl + "/published/key"))
            {
                Assert.Equal(HttpStatusCode.NoContent, del.StatusCode);
            }
            using var gone = await http.GetAsync(coordUrl + "/published/key");
            Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        }
        finally
        {
            foreach (var p in children)
            {
                if (!p.HasExited)
                {
                    p.Kill(entireProcessTree: true);
                    await p.WaitForExitAsync();
                }
                p.Dispose();
            }
            TempDir.Delete(root);
        }
    }

    private static Process Start(string exe, string root, params string[] args)
    {
        var psi = new ProcessStartInfo(exe, args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.Environment["DOTNET_BUNDLE_EXTRACT_BASE_DIR"] = Path.Combine(root, "bundle");
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }
}
