using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Ping;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;

namespace P2PInference.Benchmarks;

/// <summary>
/// Our stack on TCP loopback: a server <see cref="P2PHost"/> serving the bench protocols and a client
/// host dialing it, both in this process (TCP → multistream → Noise → Yamux, exactly as in production).
/// </summary>
internal sealed class StackBenchmarks : IAsyncDisposable
{
    public const string ThroughputProtocol = "/bench/throughput/1.0.0";
    public const string EchoProtocol = "/bench/echo/1.0.0";
    private const int MaxEchoMessage = 16 * 1024 * 1024;
    private const int ChunkSize = 64 * 1024;

    private readonly P2PHost _server;
    private readonly P2PHost _client;
    private readonly Multiaddress _serverAddress;

    private StackBenchmarks(P2PHost server, P2PHost client)
    {
        _server = server;
        _client = client;
        _serverAddress = server.AdvertisedAddresses[0];
    }

    private PeerId ServerPeer => _server.PeerId;

    public static async Task<StackBenchmarks> StartAsync(CancellationToken ct)
    {
        var server = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        RegisterBenchProtocols(server);
        await server.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], ct);
        var client = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        await client.ConnectAsync(server.AdvertisedAddresses[0], ct);
        return new StackBenchmarks(server, client);
    }

    /// <summary>The server side of /bench/throughput/1.0.0 and /bench/echo/1.0.0, as peer.mjs serves them.</summary>
    public static void RegisterBenchProtocols(P2PHost host)
    {
        host.Handle(ThroughputProtocol, async (context, ct) =>
        {
            var buffer = new byte[ChunkSize];
            long total = 0;
            int n;
            while ((n = await context.Stream.ReadAsync(buffer, ct)) > 0) total += n;
            var ack = new byte[8];
            BinaryPrimitives.WriteInt64BigEndian(ack, total);
            await context.Stream.WriteAsync(ack, ct);
            await context.Stream.CompleteWritesAsync(ct);
        });
        host.Handle(EchoProtocol, async (context, ct) =>
        {
            var message = await LengthPrefixedMessage.ReadAsync(context.Stream, MaxEchoMessage, ct);
            if (message is null) return;
            await LengthPrefixedMessage.WriteAsync(context.Stream, message, ct);
            await context.Stream.CompleteWritesAsync(ct);
        });
    }

    /// <summary>One stream: write <paramref name="bytes"/>, half-close, wait for the 8-byte total. MB/s (10^6).</summary>
    public async Task<double> ThroughputAsync(long bytes, CancellationToken ct)
    {
        var chunk = new byte[ChunkSize];
        RandomNumberGenerator.Fill(chunk);
        var stream = await _client.OpenStreamAsync(ServerPeer, ThroughputProtocol, ct);
        await using (stream)
        {
            var start = Stopwatch.GetTimestamp();
            for (long sent = 0; sent < bytes;)
            {
                var n = (int)Math.Min(chunk.Length, bytes - sent);
                await stream.WriteAsync(chunk.AsMemory(0, n), ct);
                sent += n;
            }
            await stream.CompleteWritesAsync(ct);
            var ack = new byte[8];
            await stream.ReadExactlyAsync(ack, ct);
            var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            var acknowledged = BinaryPrimitives.ReadInt64BigEndian(ack);
            if (acknowledged != bytes) throw new InvalidOperationException($"server acknowledged {acknowledged} of {bytes} bytes");
            return bytes / 1e6 / seconds;
        }
    }

    /// <summary>Sequential 32-byte ping round trips on one /ipfs/ping/1.0.0 stream, in microseconds.</summary>
    public async Task<double[]> PingAsync(int count, CancellationToken ct)
    {
        var stream = await _client.OpenStreamAsync(ServerPeer, PingProtocol.ProtocolId, ct);
        await using (stream)
        {
            for (var i = 0; i < Math.Min(100, count); i++) await PingProtocol.PingAsync(stream, TimeProvider.System, ct);
            var rtts = new double[count];
            for (var i = 0; i < count; i++)
                rtts[i] = (await PingProtocol.PingAsync(stream, TimeProvider.System, ct)).TotalMicroseconds;
            await stream.CompleteWritesAsync(ct);
            return rtts;
        }
    }

    /// <summary>Sequential fresh dial + full upgrade (+ identify, as on by default) + close, per second.</summary>
    public async Task<double> ConnectAsync(int count, CancellationToken ct)
    {
        var dialer = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        await using (dialer)
        {
            var start = Stopwatch.GetTimestamp();
            for (var i = 0; i < count; i++)
            {
                var connection = await dialer.ConnectAsync(_serverAddress, ct);
                await connection.DisposeAsync();
            }
            return count / Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
    }

    /// <summary>
    /// Memory of <paramref name="count"/> idle connections, both ends (this process holds both): KiB per
    /// connection of managed heap and working set. The dialing ends are upgraded directly, since a host
    /// keeps one connection per peer; the listening ends are the server host's.
    /// </summary>
    public async Task<(double HeapKiB, double WorkingSetKiB)> IdleConnectionsAsync(int count, CancellationToken ct)
    {
        var before = MemorySnapshot.Take();
        var connections = await OpenRawConnectionsAsync(count, ct);
        try
        {
            await SettleAsync(ct);
            var after = MemorySnapshot.Take();
            return MemorySnapshot.PerItem(before, after, count);
        }
        finally
        {
            await CloseAsync(connections, []);
        }
    }

    /// <summary>Memory of idle /bench/echo streams (opened, negotiated, nothing written), both ends, KiB per stream.</summary>
    public async Task<(double HeapKiB, double WorkingSetKiB)> IdleStreamsAsync(int connectionCount, int perConnection, CancellationToken ct)
    {
        var connections = await OpenRawConnectionsAsync(connectionCount, ct);
        var streams = new List<YamuxStream>();
        try
        {
            await SettleAsync(ct);
            var before = MemorySnapshot.Take();
            foreach (var connection in connections)
            {
                for (var i = 0; i < perConnection; i++)
                    streams.Add((await connection.OpenStreamAsync([EchoProtocol], ct)).Stream);
            }
            await SettleAsync(ct);
            var after = MemorySnapshot.Take();
            return MemorySnapshot.PerItem(before, after, streams.Count);
        }
        finally
        {
            await CloseAsync(connections, streams);
        }
    }

    /// <summary>Request-response with a new stream per call: <paramref name="concurrency"/> callers for <paramref name="duration"/>. Calls/s.</summary>
    public async Task<double> RpcAsync(int concurrency, TimeSpan duration, int size, CancellationToken ct)
    {
        var payload = new byte[size];
        RandomNumberGenerator.Fill(payload);
        for (var i = 0; i < 50; i++) await CallAsync(payload, ct);
        long calls = 0;
        var start = Stopwatch.GetTimestamp();
        var callers = Enumerable.Range(0, concurrency).Select(async _ =>
        {
            while (Stopwatch.GetElapsedTime(start) < duration)
            {
                await CallAsync(payload, ct);
                Interlocked.Increment(ref calls);
            }
        }).ToArray();
        await Task.WhenAll(callers);
        return calls / Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private async Task CallAsync(byte[] payload, CancellationToken ct)
    {
        // As RpcNode opens its streams: lazy negotiation, the proposal and the request in one write.
        var request = new byte[Varint.GetLength((ulong)payload.Length) + payload.Length];
        payload.CopyTo(request, Varint.Write(request, (ulong)payload.Length));
        var stream = await _client.OpenStreamLazyAsync(ServerPeer, EchoProtocol, request, ct);
        await using (stream)
        {
            await _client.ReadLazyAnswerAsync(stream, EchoProtocol, ct);
            var reply = await LengthPrefixedMessage.ReadAsync(stream, MaxEchoMessage, ct);
            if (reply is null || reply.Length != payload.Length)
                throw new InvalidOperationException($"echo returned {reply?.Length.ToString() ?? "nothing"}, expected {payload.Length} bytes");
        }
    }

    private async Task<List<PeerConnection>> OpenRawConnectionsAsync(int count, CancellationToken ct)
    {
        var transport = new TcpTransport();
        var connections = new List<PeerConnection>(count);
        for (var i = 0; i < count; i++)
        {
            // A fresh identity each: the server keeps one connection per peer and would retire duplicates.
            var options = new HostOptions { Identity = KeyPair.Generate(), Transports = [transport] };
            var raw = await transport.DialAsync(_serverAddress, ct);
            var connection = await ConnectionUpgrader.UpgradeAsync(raw, ConnectionDirection.Outbound, ServerPeer, options, ct);
            // The server identifies every new connection; this bare end has no identify handler and refuses.
            _ = RefuseInboundAsync(connection);
            connections.Add(connection);
        }
        return connections;
    }

    private static async Task RefuseInboundAsync(PeerConnection connection)
    {
        try
        {
            while (true) (await connection.Session.AcceptStreamAsync(CancellationToken.None)).Reset();
        }
        catch (YamuxException)
        {
        }
    }

    /// <summary>Lets in-flight work (identify, handler start-up) finish before a memory snapshot.</summary>
    private static Task SettleAsync(CancellationToken ct) => Task.Delay(BenchSettings.Settle, ct);

    private async Task CloseAsync(List<PeerConnection> connections, List<YamuxStream> streams)
    {
        foreach (var s in streams) s.Reset();
        await Task.WhenAll(connections.Select(c => c.DisposeAsync().AsTask()));
        // The server's ends close when they see ours go; wait so the next measurement starts clean.
        var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 10;
        while (_server.Connections.Count > 1 && Stopwatch.GetTimestamp() < deadline) await Task.Delay(TimeSpan.FromMilliseconds(50));
    }

    public async ValueTask DisposeAsync()
    {
        await _client.DisposeAsync();
        await _server.DisposeAsync();
    }
}
