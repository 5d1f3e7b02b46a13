using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Metadata;

/// <summary>`coord dev --coordinators 2 --meta postgres://…`: the several-coordinator shape as one local command.</summary>
public sealed class DevCoordinatorsTests(PostgresFixture pg) : IClassFixture<PostgresFixture>
{
    [Fact]
    public async Task DevRunsTwoCoordinatorsOnSharedMetadata()
    {
        var dir = TempDir.Create("dev2");
        var basePort = TestCluster.FreePort();
        try
        {
            using var dev = await ChildProcess.StartAsync("coord", basePort,
            [
                "dev", "--data", dir, "--port", $"{basePort}", "--coordinators", "2", "--meta", await pg.CreateDatabaseAsync(),
                "--s3-port", $"{TestCluster.FreePort()}",
            ]);
            var second = $"http://127.0.0.1:{basePort + 1}";
            await TestCluster.WaitUntilAsync(() => dev.Output.Contains($"coordinator  {second}", StringComparison.Ordinal), TimeSpan.FromSeconds(60), "the second coordinator listed");
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
            await TestCluster.WaitUntilAsync(
                async () => (await http.GetFromJsonAsync<JsonElement>($"{second}/healthz")).GetProperty("alive_nodes").GetInt32() == 3,
                TimeSpan.FromSeconds(60),
                "the second coordinator sees three volumes");

            var data = RandomNumberGenerator.GetBytes(100_000);
            using (var put = await http.PutAsync($"http://127.0.0.1:{basePort}/shared", new ByteArrayContent(data)))
            {
                Assert.Equal(HttpStatusCode.Created, put.StatusCode);
            }
            Assert.Equal(data, await http.GetByteArrayAsync($"{second}/shared"));
            Assert.Contains("shared PostgreSQL metadata", dev.Output, StringComparison.Ordinal);
        }
        finally
        {
            TempDir.Delete(dir);
        }
    }

    [Fact]
    public async Task SeveralCoordinatorsWithoutSharedMetadataAreRefused()
    {
        var port = TestCluster.FreePort();
        var dir = TempDir.Create("dev2");
        try
        {
            var psi = new System.Diagnostics.ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "coord.dll"), "dev", "--data", dir, "--port", $"{port}", "--coordinators", "2"])
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            using var p = System.Diagnostics.Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await p.WaitForExitAsync(cts.Token);
            Assert.Equal(2, p.ExitCode);
            Assert.Contains("--meta postgres://", await stderr, StringComparison.Ordinal);
        }
        finally
        {
            TempDir.Delete(dir);
        }
    }
}
