using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.WebUtilities;
using NanoKv.Core;

namespace NanoKv.Coordinator.Api;

/// <summary>
/// A response a relay or a volume writes to the client's socket itself (<see cref="SpliceRelay"/>,
/// <see cref="SocketHandoff"/>): the status and headers the front end set and a Content-Length. The connection
/// stays open when the listener has a <see cref="ResponseGate"/> (Kestrel then answers the request with an empty
/// stand-in that the gate drops); without one, Connection: close, because Kestrel cannot take the connection back
/// after bytes went out behind its back.
/// </summary>
internal sealed class RawHttpResponse(HttpContext ctx, Socket socket, ResponseGate? gate) : IRawResponse
{
    private long _headBytes;

    public Socket Socket => socket;

    public bool KeepAlive => gate is not null;

    /// <summary>
    /// Null unless the request is plain HTTP/1.1 without a body, Kestrel exposes the connection's socket, and
    /// nothing Kestrel wrote to it earlier is still on its way to the kernel (a pipelining client).
    /// </summary>
    public static RawHttpResponse? For(HttpContext ctx)
    {
        if (!(SpliceRelay.Enabled || SocketHandoff.Enabled) || ctx.Request.IsHttps || ctx.Request.Protocol != "HTTP/1.1" || ctx.Request.ContentLength is not (null or 0)
            || ctx.Request.Headers.ContainsKey("Transfer-Encoding") || ctx.Response.HasStarted
            || ctx.Features.Get<IConnectionSocketFeature>()?.Socket is not { } s)
        {
            return null;
        }
        var gate = ctx.Features.Get<ResponseGate>();
        if (gate is not null && !gate.Settled())
        {
            return null;
        }
        var close = ctx.Request.Headers.Connection.Any(v => v?.Contains("close", StringComparison.OrdinalIgnoreCase) == true);
        return new RawHttpResponse(ctx, s, close ? null : gate);
    }

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
            .Append(KeepAlive ? "\r\n" : "Connection: close\r\n\r\n");
        var bytes = Encoding.ASCII.GetBytes(head.ToString());
        _headBytes = bytes.Length;
        return bytes;
    }

    public void Close() => ctx.Abort();

    public void Sent(long bodyBytes)
    {
        if (gate is null)
        {
            Close();
            return;
        }
        // Kestrel answers with an empty stand-in that the gate drops; the connection carries on.
        gate.Sent(_headBytes + bodyBytes);
        ctx.Response.Headers.Clear();
        ctx.Response.ContentLength = 0;
    }
}
