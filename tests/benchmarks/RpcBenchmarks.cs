using System.Diagnostics;
using System.Security.Cryptography;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Benchmarks;

/// <summary>
/// Our RPC layer (<see cref="RpcNode"/>: envelope, one stream per call, response frame) on TCP
/// loopback — the same request-response js-libp2p does with one length-prefixed message each way.
/// </summary>
internal sealed class RpcBenchmarks : IAsyncDisposable
{
    private const string EchoMethod = "bench.echo";
    private readonly P2PHost _serverHost;
    private readonly P2PHost _clientHost;
    private readonly RpcNode _server;
    private readonly RpcNode _client;

    private RpcBenchmarks(P2PHost serverHost, P2PHost clientHost, RpcNode server, RpcNode client)
    {
        _serverHost = serverHost;
        _clientHost = clientHost;
        _server = server;
        _client = client;
    }

    public static async Task<RpcBenchmarks> StartAsync(CancellationToken ct)
    {
        var serverHost = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        var server = new RpcNode(serverHost, new RpcOptions { MaxConcurrentCallsPerPeer = 1024 });
        server.Respond(EchoMethod, (request, _) => ValueTask.FromResult(request));
        await serverHost.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], ct);
        var clientHost = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        var client = new RpcNode(clientHost);
        await clientHost.ConnectAsync(serverHost.AdvertisedAddresses[0], ct);
        return new RpcBenchmarks(serverHost, clientHost, server, client);
    }

    /// <summary><paramref name="concurrency"/> callers for <paramref name="duration"/>: calls/s and round-trip p50/p99 in µs.</summary>
    public async Task<(double CallsPerSecond, double P50Micros, double P99Micros)> RunAsync(int concurrency, TimeSpan duration, int size, CancellationToken ct)
    {
        var payload = RandomNumberGenerator.GetBytes(size);
        for (var i = 0; i < 200; i++) await CallAsync(payload, ct);
        var samples = new List<double>[concurrency];
        var start = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async c =>
        {
            var mine = samples[c] = new List<double>(4096);
            while (Stopwatch.GetElapsedTime(start) < duration)
            {
                var t = Stopwatch.GetTimestamp();
                await CallAsync(payload, ct);
                mine.Add(Stopwatch.GetElapsedTime(t).TotalMicroseconds);
            }
        }));
        var elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
        var all = samples.SelectMany(s => s).Order().ToArray();
        return (all.Length / elapsed, Percentile(all, 50), Percentile(all, 99));
    }

    private async Task CallAsync(byte[] payload, CancellationToken ct)
    {
        var reply = await _client.RequestAsync(_serverHost.PeerId, EchoMethod, payload, null, ct);
        if (reply.Length != payload.Length) throw new InvalidOperationException($"echo returned {reply.Length} bytes, expected {payload.Length}");
    }

    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];

    public async ValueTask DisposeAsync()
    {
        await _client.DisposeAsync();
        await _server.DisposeAsync();
        await _clientHost.DisposeAsync();
        await _serverHost.DisposeAsync();
    }
}
