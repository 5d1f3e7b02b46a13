using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;
using NanoKv.Volume;

namespace NanoKv.Tests.Faults;

/// <summary>Fault rules are checked (unknown op or mode: 400) and count their hits, so tests can prove a fault fired.</summary>
public class FaultRuleTests
{
    [Theory]
    [InlineData("comit", "fail")]
    [InlineData("commit", "explode")]
    [InlineData("upload_corrupt", "fail")]
    [InlineData("commit", "corrupt")]
    public async Task UnknownOpsAndModesAre400(string op, string mode)
    {
        await using var c = await TestCluster.StartAsync(volumes: 1, replicas: 1);
        using var resp = await c.Client.PostAsJsonAsync($"{c.Volume(0).Url}/admin/faults", new { op, mode });
        var text = await resp.Content.ReadAsStringAsync();
        Assert.True(resp.StatusCode == HttpStatusCode.BadRequest, $"{(int)resp.StatusCode}: {text}");
        using var doc = JsonDocument.Parse(text);
        Assert.Equal(ApiError.Codes.InvalidArgument, doc.RootElement.GetProperty("error").GetString());
        Assert.Contains(mode == "fail" && op == "comit" ? op : mode, doc.RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Empty(c.Volume(0).Faults.Report().Armed);
    }

    [Fact]
    public async Task RulesCountTheirHitsAndClearingReportsThem()
    {
        await using var c = await TestCluster.StartAsync(volumes: 1, replicas: 1);
        var vol = c.Volume(0).Url;
        using (var arm = await c.Client.PostAsJsonAsync($"{vol}/admin/faults", new { op = "get", mode = "fail", count = 2, status = 503 }))
        {
            arm.EnsureSuccessStatusCode();
        }
        for (var i = 0; i < 3; i++)
        {
            using var get = await c.Client.GetAsync($"{vol}/nothing-here");
            Assert.Equal(i < 2 ? HttpStatusCode.ServiceUnavailable : HttpStatusCode.NotFound, get.StatusCode);
        }
        var report = await c.Client.GetFromJsonAsync<JsonElement>($"{vol}/admin/faults");
        Assert.Equal(2, report.GetProperty("hits").GetProperty("get").GetInt32());
        Assert.Equal(0, report.GetProperty("armed").GetArrayLength());
        using var clear = await c.Client.DeleteAsync($"{vol}/admin/faults");
        Assert.Equal(2, (await clear.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("hits").GetProperty("get").GetInt32());
        Assert.Equal(0, c.Volume(0).Faults.Hits("get"));
    }

    [Fact]
    public void AnArmedFaultThatNeverFiredIsReported()
    {
        // TestCluster's dispose fails a test with such a fault, so no fault test passes without its fault.
        var faults = new NanoKv.Volume.Faults();
        faults.Arm(new FaultRule("commit", "fail"));
        Assert.Equal(["commit"], faults.NeverFired());
        Assert.NotNull(faults.Take("commit"));
        Assert.Empty(faults.NeverFired());
        Assert.Throws<ArgumentException>(() => faults.Arm(new FaultRule("no_such_op", "fail")));
    }
}
