using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.WebUtilities;
using NanoKv.Core;

namespace NanoKv.Coordinator.Api;

/// <summary>
/// A response a relay writes to the client's socket itself (<see cref="SpliceRelay"/>): the status and headers
/// the front end set, a Content-Length, and Connection: close, because the server cannot take the
/// connection back after bytes went out behind its back.
/// </summary>
internal sealed class RawHttpResponse(HttpContext ctx, Socket socket) : IRawResponse
{
    public Socket Socket => socket;

    /// <summary>Null unless the request is plain HTTP/1.1 without a body and Kestrel exposes the connection's socket.</summary>
    public static RawHttpResponse? For(HttpContext ctx) =>
        (SpliceRelay.Enabled || SocketHandoff.Enabled) && !ctx.Request.IsHttps && ctx.Request.Protocol == "HTTP/1.1" && ctx.Request.ContentLength is null or 0
        && !ctx.Request.Headers.ContainsKey("Transfer-Encoding") && !ctx.Response.HasStarted
        && ctx.Features.Get<IConnectionSocketFeature>()?.Socket is { } s
            ? new RawHttpResponse(ctx, s)
            : null;

    public byte[]? Head(long length)
    {
        var r = ctx.Response;
        var head = new StringBuilder(512);
        head.Append("HTTP/1.1 ").Append(r.StatusCode.ToString(CultureInfo.InvariantCulture)).Append(' ')
            .Append(ReasonPhrases.GetReasonPhrase(r.StatusCode)).Append("\r\n");
        foreach (var (name, values) in r.Headers)
        {
            if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase) || name.Equals("Connection", StringComparison.OrdinalIgnoreCase)
                || name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase) || name.Equals("Date", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            foreach (var value in values)
            {
                if (!HeaderText.IsSendable(name) || value is null || !HeaderText.IsSendable(value))
                {
                    return null; // Kestrel would refuse it too (or encode it): leave this response to Kestrel
                }
                head.Append(name).Append(": ").Append(value).Append("\r\n");
            }
        }
        head.Append("Content-Length: ").Append(length.ToString(CultureInfo.InvariantCulture)).Append("\r\n")
            .Append("Date: ").Append(DateTime.UtcNow.ToString("r", CultureInfo.InvariantCulture)).Append("\r\n")
            .Append("Connection: close\r\n\r\n");
        return Encoding.ASCII.GetBytes(head.ToString());
    }

    public void Close() => ctx.Abort();
}
