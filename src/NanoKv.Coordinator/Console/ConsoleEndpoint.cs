using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using NanoKv.Core;

namespace NanoKv.Coordinator.WebConsole;

/// <summary>
/// The web console at /ui: a few static files embedded in this assembly (no CDN, works offline). The page
/// itself holds no data; it calls the public API, /admin and /metrics with the secret or access key the
/// operator typed in, kept in the browser's local storage.
/// </summary>
public static class ConsoleEndpoint
{
    public const string Path = "/ui";

    private static readonly Dictionary<string, (string ContentType, byte[] Body)> Assets = Load();

    public static void MapConsole(this WebApplication app)
    {
        // One route for "/ui" and "/ui/...": routing ignores a trailing slash, so two routes would redirect in a loop.
        app.MapGet(Path + "/{**file}", (HttpContext ctx, string? file) =>
        {
            if (ServerHost.RawPath(ctx) == Path)
            {
                return Results.Redirect(Path + "/"); // relative asset URLs need the trailing slash
            }
            if (!Assets.TryGetValue(string.IsNullOrEmpty(file) ? "index.html" : file, out var asset))
            {
                return ApiError.NotFoundResult($"no console file {file}");
            }
            // Small and versioned with the binary: revalidate each load so an upgrade is seen at once.
            ctx.Response.Headers.CacheControl = "no-cache";
            ctx.Response.Headers["X-Content-Type-Options"] = "nosniff";
            ctx.Response.Headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'";
            return Results.Bytes(asset.Body, asset.ContentType);
        });
    }

    private static Dictionary<string, (string, byte[])> Load()
    {
        var asm = Assembly.GetExecutingAssembly();
        var assets = new Dictionary<string, (string, byte[])>(StringComparer.Ordinal);
        const string prefix = "console/";
        foreach (var name in asm.GetManifestResourceNames().Where(n => n.StartsWith(prefix, StringComparison.Ordinal)))
        {
            using var s = asm.GetManifestResourceStream(name)!;
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            var file = name[prefix.Length..];
            assets[file] = (ContentTypeOf(file), ms.ToArray());
        }
        return assets;
    }

    private static string ContentTypeOf(string file) => System.IO.Path.GetExtension(file) switch
    {
        ".html" => "text/html; charset=utf-8",
        ".js" => "text/javascript; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".svg" => "image/svg+xml",
        _ => "application/octet-stream",
    };
}
