using System.CommandLine;
using Microsoft.Extensions.Logging;
using NanoKv.Core;
using NanoKv.Volume;

if (!args.Any(a => a is "--help" or "-h" or "-?" or "--version"))
{
    JitMode.EnsureFullJit();
}

var data = new Option<string>("--data") { Description = "Data folder (blobs/, tmp/, tombs/ live under it)", Required = true };
var host = new Option<string>("--host") { Description = "Address to bind", DefaultValueFactory = _ => "127.0.0.1" };
var port = new Option<int?>("--port") { Description = "Port to listen on (default: $V<N>_PORT, N = trailing digits of the --data folder name; else the only V<N>_PORT set; else $V_PORT; else 3001)" };
var nodeId = new Option<string?>("--node-id") { Description = "Stable node id (default: derived from the data folder and persisted in it)" };
var publicUrl = new Option<string?>("--public-url") { Description = "URL clients and peers use to reach this volume (default: http://HOST:PORT)" };
var coordinator = new Option<string?>("--coordinator") { Description = "Coordinator URL to join and send heartbeats to" };
var secret = new Option<string?>("--secret") { Description = $"Cluster secret required on /internal and /admin (default: ${ClusterAuth.EnvVar})" };
var heartbeat = new Option<int>("--heartbeat-ms") { Description = "Heartbeat interval in milliseconds", DefaultValueFactory = _ => 2000 };
var faults = new Option<bool>("--enable-fault-injection") { Description = "Test only: enable POST /admin/faults (also NANOKV_FAULTS=1)" };
var peers = new Option<string?>("--peers") { Description = "Comma-separated volume URLs /internal/pull may fetch from (the coordinator's node list is added automatically)" };
var noVerify = new Option<bool>("--no-verify-reads") { Description = "Skip hashing full-body GETs against the stored BLAKE3 (faster; corrupt bytes are then only caught by verify --deep)" };
var pinBytes = new Option<long?>("--pin-bytes") { Description = "Bytes of verified blobs kept locked (mlock) in memory, so repeat full GETs send them without hashing again (default: 1/16 of RAM, at most 2 GiB); an evicted one stays mapped unlocked (up to half of RAM) and the read port sends it unhashed while all its pages stay in memory; 0 hashes every read" };
var noPinOnCommit = new Option<bool>("--no-pin-on-commit") { Description = "Do not verify a committed blob from 8 MiB ahead of its first GET (by default one still in the page cache is hashed and pinned in the background, so its first read is sent without hashing)" };
var noHandoff = new Option<bool>("--no-handoff") { Description = "Do not serve full reads handed over by a coordinator on this host (over a unix socket in the data folder: the coordinator passes its client's connection and the volume sends the blob into it, instead of the coordinator relaying every byte)" };
var readPort = new Option<int>("--read-port") { Description = "Port of the sendfile read port that redirected GETs go to (0: any free port; -1: none, GETs use --port; never with TLS)", DefaultValueFactory = _ => 0 };
var tlsCert = new Option<string?>("--tls-cert") { Description = "PEM certificate file: serve HTTPS (with --tls-key)" };
var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key file for --tls-cert" };
var verbose = new Option<bool>("--verbose") { Description = "Debug logging" };

var root = new RootCommand("nanokv volume server: stores blobs on the local filesystem and serves them over HTTP")
{
    data, host, port, nodeId, publicUrl, coordinator, secret, heartbeat, peers, noVerify, pinBytes, noPinOnCommit, noHandoff, readPort, tlsCert, tlsKey, faults, verbose,
};
root.SetAction(async (parse, ct) =>
{
    var options = new VolumeOptions
    {
        DataDir = parse.GetValue(data)!,
        Host = parse.GetValue(host)!,
        Port = parse.GetValue(port) ?? VolumePort.FromEnvironment(parse.GetValue(data)!, Environment.GetEnvironmentVariables()),
        NodeId = parse.GetValue(nodeId),
        PublicUrl = parse.GetValue(publicUrl),
        CoordinatorUrl = parse.GetValue(coordinator),
        Secret = parse.GetValue(secret) ?? Environment.GetEnvironmentVariable(ClusterAuth.EnvVar),
        HeartbeatInterval = TimeSpan.FromMilliseconds(parse.GetValue(heartbeat)),
        Peers = (parse.GetValue(peers) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
        VerifyReads = !parse.GetValue(noVerify),
        PinBytes = parse.GetValue(pinBytes) ?? VerifiedPins.DefaultBudget(),
        PinOnCommit = !parse.GetValue(noPinOnCommit),
        Handoff = !parse.GetValue(noHandoff),
        ReadPort = parse.GetValue(readPort),
        TlsCert = parse.GetValue(tlsCert),
        TlsKey = parse.GetValue(tlsKey),
        EnableFaults = parse.GetValue(faults) || Environment.GetEnvironmentVariable("NANOKV_FAULTS") == "1",
        LogLevel = parse.GetValue(verbose) ? LogLevel.Debug : LogLevel.Information,
    };
    await using var server = VolumeServer.Create(options);
    await server.StartAsync(ct);
    Console.WriteLine($"volume {server.NodeId} listening on {server.Url}" + (JitMode.FullJit ? " (full JIT, ReadyToRun off)" : ""));
    await server.WaitForShutdownAsync(ct);
    return 0;
});
return await root.Parse(args).InvokeAsync();
