using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Logging;
using NanoKv.Core;

namespace NanoKv.Volume;

/// <summary>
/// The volume's zero-copy read port. Plain full-body GETs of blobs (what coordinator redirects point at) are
/// answered with sendfile(2) from the blob's page cache, as nginx serves files, instead of copying every byte
/// into user space and through Kestrel's pipe. The read stays verified: the pages sent are the ones
/// <see cref="VerifiedPins"/> locked and hashed against the stored BLAKE3 (a first read hashes each chunk of
/// the locked mapping before sending it and holds the last chunk until the hash matches), or those of a verified
/// blob still wholly mapped (a loose pin, checked in the page tables before the send and before its last chunk).
/// Everything else —
/// HEAD, ranges, conditionals, a blob that is not resident or not pinnable, an error, an armed fault — is
/// answered 307 to the same target on the main port, which has the full semantics and error bodies.
/// Plain HTTP only: with TLS the volume has no read port.
/// </summary>
public sealed class SendfileServer : IAsyncDisposable
{
    /// <summary>Request line and headers must fit in this (431 otherwise).</summary>
    public const int MaxHeaderBytes = 16 * 1024;

    /// <summary>Bytes hashed and sent per step on a first (verifying) read; the last one is held until the hash matches.</summary>
    public const int Chunk = 1024 * 1024;

    /// <summary>Open connections at most; more are closed at once (clients then use the main port's redirects again).</summary>
    public const int MaxConnections = 4096;

    private static readonly TimeSpan IdleTimeout = TimeSpan.FromMinutes(2);
    private static readonly TimeSpan HeaderTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan SendTimeout = TimeSpan.FromMinutes(1);

    private readonly VolumeServer _volume;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<Socket, byte> _connections = new();
    private readonly ILogger _logger;
    private Task _accepting = Task.CompletedTask;

    private SendfileServer(VolumeServer volume, Socket listener, ILogger logger)
    {
        _volume = volume;
        _listener = listener;
        _logger = logger;
    }

    /// <summary>The port bound (an ephemeral one when 0 was asked for).</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

    /// <summary>Binds address:port and starts accepting.</summary>
    public static SendfileServer Start(VolumeServer volume, IPAddress address, int port, ILogger logger)
    {
        var listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.Bind(new IPEndPoint(address, port));
            listener.Listen(512);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        var server = new SendfileServer(volume, listener, logger);
        server._accepting = Task.Run(server.AcceptLoopAsync);
        return server;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        foreach (var s in _connections.Keys)
        {
            s.Dispose();
        }
        await _accepting;
        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket s;
            try
            {
                s = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stop.IsCancellationRequested)
                {
                    return;
                }
                continue;
            }
            if (_connections.Count >= MaxConnections)
            {
                s.Dispose();
                continue;
            }
            s.NoDelay = true;
            _connections[s] = 0;
            _ = Task.Run(() => ServeConnectionAsync(s));
        }
    }

    private async Task ServeConnectionAsync(Socket s)
    {
        var buf = ArrayPool<byte>.Shared.Rent(MaxHeaderBytes);
        using var sender = new PacketSender();
        var filled = 0;
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                int end;
                using (var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
                {
                    deadline.CancelAfter(filled == 0 ? IdleTimeout : HeaderTimeout);
                    while ((end = buf.AsSpan(0, filled).IndexOf("\r\n\r\n"u8)) < 0)
                    {
                        if (filled == MaxHeaderBytes)
                        {
                            await SendTextAsync(s, "431 Request Header Fields Too Large", null, close: true);
                            await LingerAsync(s, buf);
                            return;
                        }
                        var n = await s.ReceiveAsync(buf.AsMemory(filled, MaxHeaderBytes - filled), SocketFlags.None, deadline.Token);
                        if (n == 0)
                        {
                            return;
                        }
                        filled += n;
                    }
                }
                var request = Request.Parse(buf.AsSpan(0, end));
                // Keep what follows the headers: a pipelined next request.
                var used = end + 4;
                buf.AsSpan(used, filled - used).CopyTo(buf);
                filled -= used;
                if (request is null)
                {
                    await SendTextAsync(s, "400 Bad Request", null, close: true);
                    await LingerAsync(s, buf);
                    return;
                }
                if (!await HandleAsync(s, sender, request) || !request.KeepAlive)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException or IOException)
        {
            // The client went away, timed out, or the server is stopping.
        }
        catch (Exception ex)
        {
            _logger.LogError(ex, "read port connection failed");
        }
        finally
        {
            _connections.TryRemove(s, out _);
            s.Dispose();
            ArrayPool<byte>.Shared.Return(buf);
        }
    }

    /// <summary>
    /// After an error answer: stop sending and read (and drop) what the client still sends for a moment, so
    /// closing with unread input does not reset the connection before the client has read the answer.
    /// </summary>
    private static async Task LingerAsync(Socket s, byte[] scratch)
    {
        s.Shutdown(SocketShutdown.Send);
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        for (var total = 0; total < 1024 * 1024;)
        {
            var n = await s.ReceiveAsync(scratch, SocketFlags.None, deadline.Token);
            if (n == 0)
            {
                return;
            }
            total += n;
        }
    }

    /// <summary>Answers one request; false when the connection must close.</summary>
    private async Task<bool> HandleAsync(Socket s, PacketSender sender, Request req)
    {
        var volume = _volume;
        if (req.HasBody)
        {
            await SendRedirectAsync(s, req, close: true); // the body is not read here: the connection cannot be reused
            return false;
        }
        if (!req.IsPlainGet || !volume.Options.VerifyReads || volume.Faults.IsArmed("get")
            || !KeyCodec.TryParseTarget(req.Target, out var key, out _, KeyCodec.MaxInternalKeyBytes))
        {
            return await SendRedirectAsync(s, req, close: false);
        }
        var q = req.Target.IndexOf('?', StringComparison.Ordinal);
        var query = QueryHelpers.ParseQuery(q < 0 ? "" : req.Target[q..]);
        string? Param(string name) => query.TryGetValue(name, out var v) ? v.ToString() : null;
        if (volume.Options.Secret is { Length: > 0 } secret && !ClusterAuth.HasSecret(req.Secret ?? "", secret))
        {
            if (!ClusterAuth.HasValidSignature(Param("exp"), Param("sig"), secret, KeyCodec.Encode(key)))
            {
                return await SendRedirectAsync(s, req, close: false); // the main port answers 401 with its body
            }
        }
        var path = volume.Store.BlobPath(key);
        var etag = BlobStore.StoredEtag(path);
        if (etag is null)
        {
            return await SendRedirectAsync(s, req, close: false); // missing, or a blob without a recorded hash
        }
        // A redirect names the committed version it looked up: another version here means the key changed since
        // (possibly a write not committed yet), and the main port answers 404 for it.
        var want = NodeHttp.ParseVersion(Param(NodeHttp.VersionParam));
        var verified = true;
        var lease = volume.Pins.TryAcquire(path, allowLoose: true);
        if (lease is null)
        {
            verified = false;
            lease = volume.Pins.TryPin(path);
        }
        if (lease is not null && want is long w && lease.Pin.Stamp.MtimeNs / 1000 != w)
        {
            lease.Dispose();
            return await SendRedirectAsync(s, req, close: false);
        }
        ReadOutcome outcome;
        string kind;
        long sent;
        if (lease is null)
        {
            // Not pinnable whole (not all cached, over the budget, pins off): locked 1 MiB windows instead.
            var (windowed, length) = await WindowedSend.SendAsync(s, sender, volume.Pins, path, etag, (length, version) => want is long w && version != w ? null : OkHeader(length, etag, version, req.KeepAlive), SendTimeout);
            if (windowed == ReadOutcome.NotStarted)
            {
                return await SendRedirectAsync(s, req, close: false);
            }
            (outcome, kind, sent) = (windowed, "streamed", length);
        }
        else
        {
            using (lease)
            {
                var header = OkHeader(lease.Length, etag, lease.Pin.Stamp.MtimeNs / 1000, req.KeepAlive);
                outcome = await SendBlobAsync(s, sender, lease, header, verified ? null : etag);
                if (outcome == ReadOutcome.Sent && !verified)
                {
                    volume.Pins.Commit(lease);
                }
                (kind, sent) = (!verified ? "verified" : lease.Locked ? "pinned" : "mapped", lease.Length);
            }
        }
        switch (outcome)
        {
            case ReadOutcome.Sent:
                volume.Metrics.SendfileReads.WithLabels(kind).Inc();
                volume.Metrics.BytesOut.WithLabels("sendfile").Inc(sent);
                return true;
            case ReadOutcome.Corrupt:
                await volume.OnCorruptReadAsync(key, $"received data hashes differently from the stored BLAKE3 {etag}");
                return false;
            default:
                return false; // changed on disk mid-read: the client sees a cut transfer, the next read re-pins
        }
    }

    /// <summary>
    /// Sends header + blob from the pinned file: verifying as it goes when expectedEtag is set (a first read), else
    /// from a pin verified before (see <see cref="MappedSend"/>).
    /// </summary>
    private static async Task<ReadOutcome> SendBlobAsync(Socket s, PacketSender sender, VerifiedPins.Lease lease, byte[] header, string? expectedEtag)
    {
        // The pin's own inode, reopened through /proc (SendPacketsAsync wants an asynchronous FileStream, which
        // the pin's descriptor is not): sendfile reads the very file whose pages are locked, even if the path
        // has since been replaced.
        using var file = new FileStream(
            File.OpenHandle($"/proc/self/fd/{lease.Handle.DangerousGetHandle()}", FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.Asynchronous),
            FileAccess.Read, 0, isAsync: true);
        return await MappedSend.SendAsync(s, sender, file, lease.Address, lease.Length, () => VerifiedPins.Intact(lease), header, expectedEtag, lockWindows: false, SendTimeout);
    }

    private static byte[] OkHeader(long length, string etag, long version, bool keepAlive) => Encoding.ASCII.GetBytes(
        "HTTP/1.1 200 OK\r\n" +
        $"Date: {DateTime.UtcNow.ToString("r", CultureInfo.InvariantCulture)}\r\n" +
        $"Content-Length: {length.ToString(CultureInfo.InvariantCulture)}\r\n" +
        "Content-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n" +
        $"ETag: \"{etag}\"\r\n" +
        $"X-NanoKv-Version: {version.ToString(CultureInfo.InvariantCulture)}\r\n" +
        $"{VolumeServer.VerifiedHeader}: blake3\r\n" +
        (keepAlive ? "" : "Connection: close\r\n") + "\r\n");

    /// <summary>307 to the same target on the main port (method and headers are kept by the client).</summary>
    private async Task<bool> SendRedirectAsync(Socket s, Request req, bool close)
    {
        _volume.Metrics.SendfileReads.WithLabels("redirected").Inc();
        await SendTextAsync(s, "307 Temporary Redirect", _volume.Url + req.Target, close || !req.KeepAlive);
        return !close;
    }

    private static async Task SendTextAsync(Socket s, string status, string? location, bool close)
    {
        var text = $"HTTP/1.1 {status}\r\nDate: {DateTime.UtcNow.ToString("r", CultureInfo.InvariantCulture)}\r\n" +
            (location is null ? "" : $"Location: {location}\r\n") +
            "Content-Length: 0\r\n" + (close ? "Connection: close\r\n" : "") + "\r\n";
        using var deadline = new CancellationTokenSource(SendTimeout);
        await s.SendAsync(Encoding.ASCII.GetBytes(text), SocketFlags.None, deadline.Token);
    }

    /// <summary>What the read port needs of a request: its line and the headers that change the answer.</summary>
    private sealed record Request(string Method, string Target, bool KeepAlive, bool Conditional, bool HasBody, string? Secret)
    {
        public bool IsPlainGet => Method == "GET" && !Conditional;

        /// <summary>Parses the request line and headers (without the final blank line); null when malformed.</summary>
        public static Request? Parse(ReadOnlySpan<byte> head)
        {
            var text = Encoding.Latin1.GetString(head);
            var lines = text.Split("\r\n");
            var line = lines[0].Split(' ');
            // The target is echoed in a 307's Location: visible ASCII only (no CR/LF/controls to split headers with).
            if (line.Length != 3 || line[1].Length == 0 || line[1][0] != '/' || !line[2].StartsWith("HTTP/1.", StringComparison.Ordinal)
                || line[0].Length == 0 || !line[0].All(char.IsAsciiLetterUpper) || !line[1].All(c => c is > ' ' and < '\x7f'))
            {
                return null;
            }
            var http11 = line[2] == "HTTP/1.1";
            var keepAlive = http11;
            bool conditional = false, body = false;
            string? secret = null;
            for (var i = 1; i < lines.Length; i++)
            {
                var colon = lines[i].IndexOf(':', StringComparison.Ordinal);
                if (colon <= 0)
                {
                    return null;
                }
                var name = lines[i][..colon];
                var value = lines[i][(colon + 1)..].Trim();
                if (name.Equals("Connection", StringComparison.OrdinalIgnoreCase))
                {
                    keepAlive = value.Contains("close", StringComparison.OrdinalIgnoreCase) ? false
                        : value.Contains("keep-alive", StringComparison.OrdinalIgnoreCase) || keepAlive;
                }
                else if (name.Equals("Range", StringComparison.OrdinalIgnoreCase) || name.StartsWith("If-", StringComparison.OrdinalIgnoreCase))
                {
                    conditional = true;
                }
                else if (name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase)
                    || (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase) && value != "0"))
                {
                    body = true;
                }
                else if (name.Equals(ClusterAuth.Header, StringComparison.OrdinalIgnoreCase))
                {
                    secret = value;
                }
            }
            return new Request(line[0], line[1], keepAlive, conditional, body, secret);
        }
    }
}
