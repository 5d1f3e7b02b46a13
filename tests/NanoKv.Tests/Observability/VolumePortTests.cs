using System.Collections;
using NanoKv.Tests.Infrastructure;
using NanoKv.Volume;

namespace NanoKv.Tests.Observability;

/// <summary>The seed's `V1_PORT=3001 … --data ./vol1` and `V2_PORT=3002 … --data ./vol2` bind their own ports.</summary>
public sealed class VolumePortTests
{
    [Theory]
    [InlineData("./vol1", "V1_PORT=3001", 3001)]
    [InlineData("./vol2", "V2_PORT=3002", 3002)]
    [InlineData("/data/vol2/", "V1_PORT=3001,V2_PORT=3002", 3002)] // both exported: the folder's number picks
    [InlineData("./store", "V2_PORT=3002", 3002)] // no number in the folder: the only V<N>_PORT set
    [InlineData("./store", "V1_PORT=3001,V2_PORT=3002,V_PORT=4000", 4000)]
    [InlineData("./vol7", "V_PORT=4000", 4000)]
    [InlineData("./vol1", "", 3001)]
    [InlineData("./vol3", "V3_PORT=notaport,V_PORT=4001", 4001)]
    public void Port_comes_from_the_matching_variable(string data, string vars, int expected)
    {
        var env = new Hashtable();
        foreach (var kv in vars.Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            env[kv.Split('=')[0]] = kv.Split('=')[1];
        }
        Assert.Equal(expected, VolumePort.FromEnvironment(data, env));
    }

    [Fact]
    public async Task Seed_commands_start_two_volumes_on_their_own_ports()
    {
        var root = TempDir.Create("seedports");
        var p1 = TestCluster.FreePort();
        var p2 = TestCluster.FreePort();
        try
        {
            // As the seed writes them, one variable each and no --port (the folder is absolute here, the name is what counts).
            // StartAsync waits for /healthz on the given port: answering there is the assertion.
            using var v1 = await ChildProcess.StartAsync("volume", p1, ["--data", Path.Combine(root, "vol1")], new Dictionary<string, string> { ["V1_PORT"] = $"{p1}" });
            using var v2 = await ChildProcess.StartAsync("volume", p2, ["--data", Path.Combine(root, "vol2")], new Dictionary<string, string> { ["V2_PORT"] = $"{p2}" });
            Assert.Contains($"127.0.0.1:{p1}", v1.Output, StringComparison.Ordinal);
            Assert.Contains($"127.0.0.1:{p2}", v2.Output, StringComparison.Ordinal);
        }
        finally
        {
            TempDir.Delete(root);
        }
    }
}
