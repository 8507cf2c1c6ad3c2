using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.Tests.Integration.Transport;

/// <summary>
/// A node behind a TCP load balancer that speaks the PROXY protocol (<see cref="TcpTransportOptions.ProxyProtocol"/>):
/// real hosts on loopback TCP, and an in-test proxy that connects to the node for each client, writes a
/// header naming a client address from the documentation range, then pipes bytes both ways. The tests that name the
/// balancers (<see cref="TcpTransportOptions.ProxyProtocolSources"/>) use two loopback addresses, which needs Linux (elsewhere only 127.0.0.1 is up).
/// </summary>
[CancelAfter(20000)]
public sealed class ProxyProtocolTests
{
    private static readonly Multiaddress Loopback = Multiaddress.Parse("/ip4/127.0.0.1/tcp/0");

    private static byte[] V2(string ip, ushort port)
    {
        byte[] header = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0, 12, .. IPAddress.Parse(ip).GetAddressBytes(),
            127, 0, 0, 1, 0, 0, 0, 0];
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(24), port);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(26), 443);
        return header;
    }

    private static byte[] V1(string ip, ushort port) => System.Text.Encoding.ASCII.GetBytes($"PROXY TCP4 {ip} 127.0.0.1 {port} 443\r\n");

    private static async Task<P2PHost> StartBehindProxyAsync(CancellationToken cancellationToken, int maxInboundPerAddress = 32,
        FakeTimeProvider? time = null, int maxPendingHeaders = 256, IReadOnlyList<IPNetwork>? sources = null)
    {
        var host = new P2PHost(new HostOptions
        {
            Identity = KeyPair.Generate(),
            Transports = [new TcpTransport(new TcpTransportOptions { ProxyProtocol = true, ProxyProtocolSources = sources ?? [] })],
            MaxInboundConnectionsPerAddress = maxInboundPerAddress,
            MaxPendingProxyHeaders = maxPendingHeaders,
            UpgradeTimeout = time is null ? HostOptions.DefaultUpgradeTimeout : TimeSpan.FromSeconds(1),
            TimeProvider = time ?? TimeProvider.System,
        });
        await host.StartAsync([Loopback], cancellationToken);
        return host;
    }

    private static P2PHost NewDialer() => new(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });

    [TestCase(2)]
    [TestCase(1)]
    public async Task ThroughTheProxy_TheNodeSeesTheClientsAddress(int version, CancellationToken cancellationToken)
    {
        await using var listener = await StartBehindProxyAsync(cancellationToken);
        await using var proxy = new Proxy(listener.ListenAddresses[0], _ => version == 2 ? V2("203.0.113.7", 4001) : V1("203.0.113.7", 4001));
        await using var dialer = NewDialer();
        var (outbound, connection) = await HostConnections.ConnectAsync(dialer, listener, cancellationToken, proxy.Address.WithPeerId(listener.PeerId));
        var told = await dialer.IdentifyAsync(outbound, cancellationToken);

        Assert.That(connection.RemoteAddress, Is.EqualTo(Multiaddress.Parse("/ip4/203.0.113.7/tcp/4001")));
        Assert.That(connection.LocalAddress, Is.EqualTo(listener.ListenAddresses[0]), "the node's own end is its listener's");
        Assert.That(connection.RemoteScope, Is.EqualTo(AddressScope.Public));
        Assert.That(connection.Origin, Does.Contain("203.0.113.7"), "per-address limits count the client, not the proxy");
        Assert.That(told.ObservedAddress, Is.EqualTo(Multiaddress.Parse("/ip4/203.0.113.7/tcp/4001")), "identify tells the client where it was seen");
    }

    [Test]
    public async Task AConnectionWithoutAHeader_IsRefused_AndProxiedOnesStillGetIn(CancellationToken cancellationToken)
    {
        await using var listener = await StartBehindProxyAsync(cancellationToken);
        await using var proxy = new Proxy(listener.ListenAddresses[0], _ => V2("203.0.113.7", 4001));
        await using var direct = NewDialer();

        Assert.That(async () => await direct.ConnectAsync(listener.ListenAddresses[0].WithPeerId(listener.PeerId), cancellationToken), Throws.Exception,
            "the node's port reached directly must not take the connection: it would believe any header sent after");
        Assert.That(listener.GetConnection(direct.PeerId), Is.Null);

        await using var proxied = NewDialer();
        var (_, inbound) = await HostConnections.ConnectAsync(proxied, listener, cancellationToken, proxy.Address.WithPeerId(listener.PeerId));
        Assert.That(inbound.RemoteAddress, Is.EqualTo(Multiaddress.Parse("/ip4/203.0.113.7/tcp/4001")));
    }

    [Test]
    public async Task TheInboundCapPerAddress_CountsEachClient_NotTheProxy(CancellationToken cancellationToken)
    {
        await using var listener = await StartBehindProxyAsync(cancellationToken, maxInboundPerAddress: 1);
        string[] clients = ["203.0.113.7", "203.0.113.8", "203.0.113.7"];
        await using var proxy = new Proxy(listener.ListenAddresses[0], i => V2(clients[i], (ushort)(4001 + i)));
        await using var first = NewDialer();
        await using var second = NewDialer();
        await using var third = NewDialer();

        await HostConnections.ConnectAsync(first, listener, cancellationToken, proxy.Address.WithPeerId(listener.PeerId));
        await HostConnections.ConnectAsync(second, listener, cancellationToken, proxy.Address.WithPeerId(listener.PeerId));

        Assert.That(async () => await third.ConnectAsync(proxy.Address.WithPeerId(listener.PeerId), cancellationToken), Throws.Exception,
            "a second connection from 203.0.113.7 is over the cap of one per address");
        Assert.That(listener.GetConnection(first.PeerId), Is.Not.Null);
        Assert.That(listener.GetConnection(second.PeerId), Is.Not.Null, "two clients through one proxy each have their own address's slot");
        Assert.That(listener.GetConnection(third.PeerId), Is.Null);
    }

    [Test]
    public async Task SilentConnections_DoNotHoldUpOthers_AreBoundedInNumber_AndCloseAtTheDeadline(CancellationToken cancellationToken)
    {
        var time = new FakeTimeProvider();
        await using var listener = await StartBehindProxyAsync(cancellationToken, time: time, maxPendingHeaders: 3);
        await using var proxy = new Proxy(listener.ListenAddresses[0], i => V2("203.0.113.7", (ushort)(4001 + i)));
        var target = (IPEndPoint)EndPointOf(listener.ListenAddresses[0]);
        using var silent1 = new TcpClient();
        using var silent2 = new TcpClient();
        await silent1.ConnectAsync(target, cancellationToken);
        await silent2.ConnectAsync(target, cancellationToken);

        await using (var dialer = NewDialer())
            await dialer.ConnectAsync(proxy.Address.WithPeerId(listener.PeerId), cancellationToken);

        using var silent3 = new TcpClient();
        await silent3.ConnectAsync(target, cancellationToken);
        using var overTheBound = new TcpClient();
        await overTheBound.ConnectAsync(target, cancellationToken);
        Assert.That(await ClosedAsync(overTheBound, cancellationToken), Is.True,
            "with three connections waiting for their header, a fourth is closed at once (the clock has not moved)");

        time.Advance(TimeSpan.FromSeconds(1));
        Assert.That(await ClosedAsync(silent1, cancellationToken), Is.True);
        Assert.That(await ClosedAsync(silent2, cancellationToken), Is.True);
        Assert.That(await ClosedAsync(silent3, cancellationToken), Is.True, "each silent connection is closed at the upgrade deadline");

        await using var later = NewDialer();
        await HostConnections.ConnectAsync(later, listener, cancellationToken, proxy.Address.WithPeerId(listener.PeerId));
    }

    // The whole of 127.0.0.0/8 is loopback on Linux, so the balancer connects from 127.0.0.2 and direct peers from 127.0.0.1.
    private static readonly IPAddress Balancer = IPAddress.Parse("127.0.0.2");

    [Test]
    public async Task WithTheBalancersNamed_ItsConnectionsNameTheClient_AndPeersDialingDirectlyAreTakenAsTheyCome(CancellationToken cancellationToken)
    {
        await using var listener = await StartBehindProxyAsync(cancellationToken, sources: [IPNetwork.Parse("127.0.0.2/32")]);
        await using var proxy = new Proxy(listener.ListenAddresses[0], _ => V2("203.0.113.7", 4001), from: Balancer);
        await using var proxied = NewDialer();
        await using var direct = NewDialer();

        var (_, throughBalancer) = await HostConnections.ConnectAsync(proxied, listener, cancellationToken, proxy.Address.WithPeerId(listener.PeerId));
        var (outbound, directly) = await HostConnections.ConnectAsync(direct, listener, cancellationToken);
        var told = await direct.IdentifyAsync(outbound, cancellationToken);

        Assert.That(throughBalancer.RemoteAddress, Is.EqualTo(Multiaddress.Parse("/ip4/203.0.113.7/tcp/4001")));
        Assert.That(directly.RemoteAddress.ToString(), Does.StartWith("/ip4/127.0.0.1/tcp/"), "a peer that dialed the node itself keeps its own address");
        Assert.That(told.ObservedAddress, Is.EqualTo(directly.RemoteAddress));
    }

    [Test]
    public async Task WithTheBalancersNamed_AHeaderFromAnyoneElse_IsNotBelieved(CancellationToken cancellationToken)
    {
        await using var listener = await StartBehindProxyAsync(cancellationToken, sources: [IPNetwork.Parse("127.0.0.2/32")]);
        await using var impostor = new Proxy(listener.ListenAddresses[0], _ => V2("203.0.113.9", 4001), from: IPAddress.Loopback);
        await using var dialer = NewDialer();

        Assert.That(async () => await dialer.ConnectAsync(impostor.Address.WithPeerId(listener.PeerId), cancellationToken), Throws.Exception,
            "a header from an address that is not a balancer's is not read: it is garbage where libp2p's first bytes belong");
        Assert.That(listener.GetConnection(dialer.PeerId), Is.Null);

        await using var proxy = new Proxy(listener.ListenAddresses[0], _ => V2("203.0.113.7", 4001), from: Balancer);
        await using var proxied = NewDialer();
        var (_, inbound) = await HostConnections.ConnectAsync(proxied, listener, cancellationToken, proxy.Address.WithPeerId(listener.PeerId));
        Assert.That(inbound.RemoteAddress, Is.EqualTo(Multiaddress.Parse("/ip4/203.0.113.7/tcp/4001")), "the node still serves the balancer's clients");
    }

    [Test]
    public void TheProxyProtocol_AndInboundPeersArePublic_AreRefusedTogether()
    {
        var error = Assert.Throws<ArgumentException>(() => _ = new P2PHost(new HostOptions
        {
            Identity = KeyPair.Generate(),
            Transports = [new TcpTransport(new TcpTransportOptions { ProxyProtocol = true })],
            InboundPeersArePublic = true,
        }));

        Assert.That(error!.Message, Does.Contain("set only one"));
    }

    private static EndPoint EndPointOf(Multiaddress address)
    {
        var (host, port) = address.TcpHostPort()!.Value;
        return new IPEndPoint(IPAddress.Parse(host), port);
    }

    /// <summary>Whether the node closed the connection: a read ends (end of stream or reset) rather than waiting for bytes that never come.</summary>
    private static async Task<bool> ClosedAsync(TcpClient client, CancellationToken cancellationToken)
    {
        try
        {
            return await client.GetStream().ReadAsync(new byte[1], cancellationToken) == 0;
        }
        catch (IOException)
        {
            return true;
        }
    }

    /// <summary>A TCP proxy in the test: for each client, a connection to the node that starts with the header <c>header(i)</c> for the i-th client.</summary>
    private sealed class Proxy : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly IPEndPoint _target;
        private readonly Func<int, byte[]> _header;
        private readonly CancellationTokenSource _stop = new();
        private readonly List<TcpClient> _open = [];
        private readonly Task _accepting;
        private readonly IPAddress? _from;

        /// <param name="from">The address the proxy connects to the node from; null leaves it to the system.</param>
        public Proxy(Multiaddress target, Func<int, byte[]> header, IPAddress? from = null)
        {
            _target = (IPEndPoint)EndPointOf(target);
            _header = header;
            _from = from;
            _listener.Start();
            Address = Multiaddress.FromIPEndPoint((IPEndPoint)_listener.LocalEndpoint);
            _accepting = AcceptAsync();
        }

        public Multiaddress Address { get; }

        private async Task AcceptAsync()
        {
            for (var i = 0; ; i++)
            {
                TcpClient client;
                try
                {
                    client = await _listener.AcceptTcpClientAsync(_stop.Token);
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    return;
                }
                _ = ServeAsync(client, _header(i));
            }
        }

        private async Task ServeAsync(TcpClient client, byte[] header)
        {
            var server = _from is null ? new TcpClient() : new TcpClient(new IPEndPoint(_from, 0));
            lock (_open) _open.AddRange([client, server]);
            try
            {
                await server.ConnectAsync(_target, _stop.Token);
                await server.GetStream().WriteAsync(header, _stop.Token);
                await Task.WhenAll(PipeAsync(client, server), PipeAsync(server, client));
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
            }
            finally
            {
                client.Dispose();
                server.Dispose();
            }
        }

        // One direction; its end is passed on as a half close, and a failure ends both.
        private async Task PipeAsync(TcpClient from, TcpClient to)
        {
            try
            {
                await from.GetStream().CopyToAsync(to.GetStream(), _stop.Token);
                to.Client.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
                from.Dispose();
                to.Dispose();
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _accepting;
            lock (_open)
            {
                foreach (var client in _open) client.Dispose();
            }
            _stop.Dispose();
        }
    }
}
