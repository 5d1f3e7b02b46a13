using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Observability;

/// <summary>Scrapes /metrics of a live cluster of real processes and watches the series move under load and faults.</summary>
public sealed class MetricsTests
{
    [Fact]
    public async Task Series_move_under_load_faults_and_ops()
    {
        await using var cluster = await ProcessCluster.StartAsync(volumes: 3, replicas: 2);

        // Guarded like /admin: the secret header or a bearer token.
        using (var anonymous = await cluster.Client.GetAsync($"{cluster.Url}/metrics"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        }
        using (var volAnonymous = await cluster.Client.GetAsync($"{cluster.VolumeUrl(0)}/metrics"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, volAnonymous.StatusCode);
        }
        using (var bearer = new HttpRequestMessage(HttpMethod.Get, $"{cluster.Url}/metrics"))
        {
            bearer.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", cluster.Secret);
            using var resp = await cluster.Client.SendAsync(bearer);
            Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
            Assert.StartsWith("text/plain", resp.Content.Headers.ContentType!.ToString(), StringComparison.Ordinal);
        }

        var coord0 = await ScrapeAsync(cluster, cluster.Url);
        var vols0 = await Task.WhenAll(Enumerable.Range(0, 3).Select(i => ScrapeAsync(cluster, cluster.VolumeUrl(i))));

        // Load: 20 PUTs of 64 KiB, a GET of each, 5 DELETEs.
        const int Puts = 20;
        var body = System.Security.Cryptography.RandomNumberGenerator.GetBytes(64 * 1024);
        for (var i = 0; i < Puts; i++)
        {
            using var put = await cluster.Client.PutAsync($"{cluster.Url}/load/{i}", new ByteArrayContent(body));
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
            Assert.Equal(body, await cluster.Client.GetByteArrayAsync($"{cluster.Url}/load/{i}"));
        }
        for (var i = 0; i < 5; i++)
        {
            (await cluster.Client.DeleteAsync($"{cluster.Url}/load/{i}")).EnsureSuccessStatusCode();
        }

        // A failed upload: the PUT is aborted and the replica failure counted.
        for (var v = 0; v < 3; v++)
        {
            await cluster.ArmAsync(v, "upload", "fail", count: 1, status: 500);
        }
        using (var failed = await cluster.Client.PutAsync($"{cluster.Url}/doomed", new ByteArrayContent(body)))
        {
            Assert.False(failed.IsSuccessStatusCode);
        }
        var hits = 0;
        for (var v = 0; v < 3; v++)
        {
            hits += await cluster.FaultHitsAsync(v, "upload");
            (await cluster.Admin.DeleteAsync($"{cluster.VolumeUrl(v)}/admin/faults")).EnsureSuccessStatusCode();
        }
        Assert.True(hits >= 1, "the injected upload fault never fired");

        // A corrupt replica on disk: the volume's verified read fails and quarantines it.
        var meta = await cluster.Client.GetFromJsonAsync<JsonElement>($"{cluster.Url}/?list&prefix=load%2F19");
        var holder = meta.GetProperty("keys")[0].GetProperty("replicas")[0].GetString()!;
        var hv = int.Parse(holder["vol".Length..], System.Globalization.CultureInfo.InvariantCulture);
        var blob = Path.Combine(cluster.VolumeDir(hv), "blobs", KeyCodec.BlobRelativePath("load/19"u8));
        await using (var fs = new FileStream(blob, FileMode.Open, FileAccess.ReadWrite))
        {
            fs.Position = 100;
            var b = fs.ReadByte();
            fs.Position = 100;
            fs.WriteByte((byte)(b ^ 0x40));
        }
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => cluster.Admin.GetByteArrayAsync($"{cluster.VolumeUrl(hv)}/load%2F19"));

        await cluster.OpsAsync("verify"); // the live job the ops gauges report

        var coord1 = await ScrapeAsync(cluster, cluster.Url);
        var vols1 = await Task.WhenAll(Enumerable.Range(0, 3).Select(i => ScrapeAsync(cluster, cluster.VolumeUrl(i))));

        // Requests by route, method and status; latency histogram; bytes in.
        Assert.Equal(Puts, Delta(coord0, coord1, "nanokv_http_requests_total", ("route", "/{key}"), ("method", "PUT"), ("status", "201")));
        Assert.Equal(Puts, Delta(coord0, coord1, "nanokv_http_requests_total", ("route", "/{key}"), ("method", "GET"), ("status", "302")));
        Assert.Equal(5, Delta(coord0, coord1, "nanokv_http_requests_total", ("route", "/{key}"), ("method", "DELETE"), ("status", "204")));
        Assert.True(Delta(coord0, coord1, "nanokv_http_request_duration_seconds_count", ("route", "/{key}"), ("method", "PUT")) >= Puts);
        Assert.True(Delta(coord0, coord1, "nanokv_http_request_bytes_total", ("route", "/{key}")) >= Puts * body.Length);

        // PUT phases, failures, aborts.
        foreach (var phase in new[] { "upload", "commit", "metadata" })
        {
            Assert.True(Delta(coord0, coord1, "nanokv_put_phase_duration_seconds_count", ("phase", phase)) >= Puts, phase);
        }
        Assert.True(Delta(coord0, coord1, "nanokv_put_aborts_total") >= 1);
        Assert.True(Delta(coord0, coord1, "nanokv_replica_failures_total", ("phase", "upload")) >= 1);
        Assert.True(Delta(coord0, coord1, "nanokv_corrupt_reports_total") >= 1);

        // Gauges of cluster state, ops progress, the index.
        Assert.Equal(0, PromText.Sum(coord1, "nanokv_pending_writes"));
        Assert.NotNull(PromText.Sum(coord1, "nanokv_owed_deletes"));
        for (var v = 0; v < 3; v++)
        {
            Assert.Equal(1, PromText.Sum(coord1, "nanokv_node_state", ("node", $"vol{v}"), ("state", "alive")));
            Assert.Equal(0, PromText.Sum(coord1, "nanokv_node_state", ("node", $"vol{v}"), ("state", "down")));
            Assert.True(PromText.Sum(coord1, "nanokv_node_capacity_bytes", ("node", $"vol{v}")) > 0);
        }
        Assert.Equal(1, PromText.Sum(coord1, "nanokv_ops_jobs", ("command", "verify"), ("state", "done")));
        Assert.True(PromText.Sum(coord1, "nanokv_ops_job_done", ("command", "verify")) >= Puts - 5);
        Assert.True(PromText.Sum(coord1, "nanokv_rocksdb_property", ("property", "estimate-num-keys")) > 0);
        Assert.NotNull(PromText.Sum(coord1, "nanokv_rocksdb_property", ("property", "compaction-pending")));

        // Volumes: their upload route received the bytes; the corrupt read was caught and quarantined.
        var uploaded = Enumerable.Range(0, 3).Sum(i => Delta(vols0[i], vols1[i], "nanokv_http_request_bytes_total", ("route", "/internal/upload")));
        Assert.True(uploaded >= Puts * body.Length * 2, $"volumes received {uploaded} upload bytes");
        Assert.Equal(1, Delta(vols0[hv], vols1[hv], "nanokv_verified_read_failures_total"));
        Assert.Equal(1, Delta(vols0[hv], vols1[hv], "nanokv_quarantined_blobs_total"));
        Assert.All(vols1, v => Assert.True(PromText.Sum(v, "nanokv_volume_free_bytes") > 0));
        Assert.All(vols1, v => Assert.NotNull(PromText.Sum(v, "nanokv_volume_blobs")));

        // The Grafana dashboard uses exactly the exported names: each of its series exists, each family is charted.
        var dashboard = await File.ReadAllTextAsync(Path.Combine(PromText.RepoRoot(), "docs", "grafana-dashboard.json"));
        var charted = System.Text.RegularExpressions.Regex.Matches(dashboard, "nanokv_[a-z0-9_]+").Select(m => m.Value)
            .Where(n => n != "nanokv_overview").Select(n => System.Text.RegularExpressions.Regex.Replace(n, "_(bucket|sum|count)$", "")).ToHashSet();
        var exported = PromText.Families(coord1).Concat(vols1.SelectMany(PromText.Families)).ToHashSet();
        Assert.Empty(charted.Except(exported));
        Assert.Empty(exported.Except(charted));
    }

    private static async Task<string> ScrapeAsync(ProcessCluster cluster, string url)
    {
        using var resp = await cluster.Admin.GetAsync(url + "/metrics");
        resp.EnsureSuccessStatusCode();
        return await resp.Content.ReadAsStringAsync();
    }

    private static double Delta(string before, string after, string name, params (string, string)[] labels) =>
        (PromText.Sum(after, name, labels) ?? 0) - (PromText.Sum(before, name, labels) ?? 0);
}
