using Microsoft.Playwright;
using NanoKv.Core;
using NanoKv.Tests.Infrastructure;

namespace NanoKv.Tests.Observability;

/// <summary>
/// The web console in a real headless Chromium (Debian's, installed by .ci/run): sign in with the cluster
/// secret, upload through the page, see the key listed, download it byte-identical, run a verify to the end.
/// </summary>
public sealed class ConsoleBrowserTests
{
    private const string Chromium = "/usr/bin/chromium";
    private static readonly float Timeout = 60_000;

    [Fact]
    public async Task Upload_list_download_and_verify_through_the_console()
    {
        Assert.True(File.Exists(Chromium), $"{Chromium} is missing: apt-get install chromium (.ci/run does)");
        await using var cluster = await TestCluster.StartAsync(volumes: 3, replicas: 2, secret: "console-secret");
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = Chromium,
            Args = ["--no-sandbox"],
            Headless = true,
        });
        var context = await browser.NewContextAsync(new BrowserNewContextOptions { AcceptDownloads = true, ViewportSize = new ViewportSize { Width = 1280, Height = 720 } });
        context.SetDefaultTimeout(Timeout);
        var page = await context.NewPageAsync();
        var consoleErrors = new List<string>();
        page.Console += (_, msg) =>
        {
            // The first load, before signing in, is refused (401) by design; anything else is a bug.
            if (msg.Type == "error" && !msg.Text.Contains("401", StringComparison.Ordinal))
            {
                consoleErrors.Add(msg.Text + " " + msg.Location);
            }
        };

        // The cluster has a secret: the console asks for it once.
        await page.GotoAsync(cluster.Url + "/ui");
        await page.Locator("#login-secret").FillAsync("console-secret");
        await page.Locator("#login-form button[type=submit]").ClickAsync();
        await Assertions.Expect(page.Locator("#volumes tbody tr")).ToHaveCountAsync(3);
        await Assertions.Expect(page.Locator("#volumes .badge.alive")).ToHaveCountAsync(3);

        // Upload through the page (with its progress bar), then find the key in the listing.
        var bytes = System.Security.Cryptography.RandomNumberGenerator.GetBytes(3 * 1024 * 1024 + 17);
        await page.GotoAsync(cluster.Url + "/ui/#objects");
        await page.Locator("#prefix").FillAsync("console/");
        await page.Locator("#upload-file").SetInputFilesAsync(new FilePayload { Name = "payload ü.bin", MimeType = "application/octet-stream", Buffer = bytes });
        await Assertions.Expect(page.Locator("#upload-key")).ToHaveValueAsync("console/payload ü.bin");
        await page.Locator("#upload-button").ClickAsync();
        await Assertions.Expect(page.Locator("#upload-status")).ToContainTextAsync("uploaded");
        Assert.Equal(100, await page.Locator("#upload-progress").EvaluateAsync<int>("p => p.value"));
        var encoded = KeyCodec.Encode("console/payload ü.bin"u8);
        var row = page.Locator($"#objects tr[data-key='{encoded}']");
        await Assertions.Expect(row).ToHaveCountAsync(1);
        await Assertions.Expect(row).ToContainTextAsync("3.0 MiB");

        // Download: byte-identical.
        var download = await page.RunAndWaitForDownloadAsync(() => row.Locator("button.download").ClickAsync());
        var saved = Path.Combine(cluster.Root, "downloaded.bin");
        await download.SaveAsAsync(saved);
        Assert.Equal(bytes, await File.ReadAllBytesAsync(saved));

        // Ops: a verify on the live cluster, watched to its report.
        await page.GotoAsync(cluster.Url + "/ui/#ops");
        await page.Locator("#ops-command").SelectOptionAsync("verify");
        await page.Locator("#ops-start").ClickAsync();
        await Assertions.Expect(page.Locator("#job-state")).ToHaveTextAsync("done");
        await Assertions.Expect(page.Locator("#report-counts")).ToBeVisibleAsync();
        await Assertions.Expect(page.Locator("#jobs tbody tr")).ToHaveCountAsync(1);

        // Metrics charts sample /metrics (two samples make a rate).
        await page.GotoAsync(cluster.Url + "/ui/#metrics");
        await page.WaitForFunctionAsync("() => history.t.length >= 1");
        await Assertions.Expect(page.Locator("#metrics-error")).ToBeEmptyAsync();

        // The overview, as the README shows it.
        await page.GotoAsync(cluster.Url + "/ui/#overview");
        await Assertions.Expect(page.Locator("#volumes .badge.alive")).ToHaveCountAsync(3);
        await Assertions.Expect(page.Locator("#stat-alive")).ToHaveTextAsync("3");
        var shot = Environment.GetEnvironmentVariable("NANOKV_CONSOLE_SCREENSHOT") ?? Path.Combine(cluster.Root, "console.png");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = shot });
        Assert.True(new FileInfo(shot).Length > 0);
        Assert.True(consoleErrors.Count == 0, string.Join("\n", consoleErrors));
    }
}
