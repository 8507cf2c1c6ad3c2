using System.Net;
using System.Net.Sockets;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Integration.Transport;

[CancelAfter(10000)]
public sealed class TcpTransportTests
{
    private const string PeerIdText = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq";

    private static readonly Multiaddress Loopback4 = Multiaddress.Parse("/ip4/127.0.0.1/tcp/0");

    [Test]
    public async Task Listen_OnPortZero_ReportsTheBoundPort(CancellationToken cancellationToken)
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(Loopback4, cancellationToken);

        var hostPort = listener.Address.TcpHostPort();
        Assert.That(hostPort, Is.Not.Null);
        Assert.That(hostPort!.Value.Host, Is.EqualTo("127.0.0.1"));
        Assert.That(hostPort.Value.Port, Is.InRange(1, 65535));
        Assert.That(listener.Address.ToString(), Is.EqualTo($"/ip4/127.0.0.1/tcp/{hostPort.Value.Port}"));
    }

    [Test]
    public async Task DialAndAccept_CarryDataBothWays(CancellationToken cancellationToken)
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(Loopback4, cancellationToken);

        var accepting = listener.AcceptAsync(cancellationToken).AsTask();
        await using var client = await transport.DialAsync(listener.Address, cancellationToken);
        await using var server = await accepting;

        Assert.That(client.RemoteAddress, Is.EqualTo(listener.Address));
        Assert.That(server.LocalAddress, Is.EqualTo(listener.Address));
        Assert.That(server.RemoteAddress, Is.EqualTo(client.LocalAddress));

        var random = TestSeed.CreateRandom();
        var up = new byte[300_000];
        var down = new byte[200_000];
        random.NextBytes(up);
        random.NextBytes(down);

        // Both directions at once: neither side may depend on the other reading first.
        var sendUp = WriteAndShutdownAsync(client.Stream, up, cancellationToken);
        var sendDown = WriteAndShutdownAsync(server.Stream, down, cancellationToken);
        var receivedUp = ReadToEndAsync(server.Stream, cancellationToken);
        var receivedDown = ReadToEndAsync(client.Stream, cancellationToken);
        await Task.WhenAll(sendUp, sendDown, receivedUp, receivedDown);

        Assert.That(await receivedUp, Is.EqualTo(up));
        Assert.That(await receivedDown, Is.EqualTo(down));
    }

    [Test]
    public async Task DisposingOneEnd_EndsThePeersReads(CancellationToken cancellationToken)
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(Loopback4, cancellationToken);
        var accepting = listener.AcceptAsync(cancellationToken).AsTask();
        var client = await transport.DialAsync(listener.Address, cancellationToken);
        await using var server = await accepting;

        await client.DisposeAsync();

        var buffer = new byte[16];
        Assert.That(await server.Stream.ReadAsync(buffer, cancellationToken), Is.Zero);
    }

    [Test]
    public async Task Connections_HaveNoDelayAndConfiguredBuffers(CancellationToken cancellationToken)
    {
        var transport = new TcpTransport(new TcpTransportOptions { ReceiveBufferSize = 128 * 1024, SendBufferSize = 128 * 1024 });
        await using var listener = await transport.ListenAsync(Loopback4, cancellationToken);
        var accepting = listener.AcceptAsync(cancellationToken).AsTask();
        await using var client = await transport.DialAsync(listener.Address, cancellationToken);
        await using var server = await accepting;

        foreach (var connection in new[] { client, server })
        {
            var socket = ((NetworkStream)connection.Stream).Socket;
            Assert.That(socket.NoDelay, Is.True);
            // Linux doubles the requested size for its bookkeeping; it never gives less.
            Assert.That(socket.ReceiveBufferSize, Is.GreaterThanOrEqualTo(128 * 1024));
            Assert.That(socket.SendBufferSize, Is.GreaterThanOrEqualTo(128 * 1024));
        }
    }

    [Test]
    public async Task Dial_WithTrailingPeerId_Connects(CancellationToken cancellationToken)
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(Loopback4, cancellationToken);
        var address = listener.Address.WithPeerId(PeerId.Parse(PeerIdText));

        Assert.That(transport.CanDial(address), Is.True);
        Assert.That(transport.CanListen(address), Is.False);
        var accepting = listener.AcceptAsync(cancellationToken).AsTask();
        await using var client = await transport.DialAsync(address, cancellationToken);
        await using var server = await accepting;
        Assert.That(client.RemoteAddress, Is.EqualTo(listener.Address));
    }

    [Test]
    public async Task Dial_Dns4Localhost_Connects(CancellationToken cancellationToken)
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(Loopback4, cancellationToken);
        var port = listener.Address.TcpHostPort()!.Value.Port;
        var address = Multiaddress.Parse($"/dns4/localhost/tcp/{port}");

        Assert.That(transport.CanDial(address), Is.True);
        var accepting = listener.AcceptAsync(cancellationToken).AsTask();
        await using var client = await transport.DialAsync(address, cancellationToken);
        await using var server = await accepting;
        Assert.That(client.RemoteAddress.ToString(), Is.EqualTo($"/ip4/127.0.0.1/tcp/{port}"));
    }

    [Test]
    public async Task ListenAndDial_OnIPv6Loopback(CancellationToken cancellationToken)
    {
        Assume.That(Socket.OSSupportsIPv6, Is.True, "this machine has no IPv6");
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(Multiaddress.Parse("/ip6/::1/tcp/0"), cancellationToken);
        Assert.That(listener.Address.ToString(), Does.StartWith("/ip6/::1/tcp/"));

        var accepting = listener.AcceptAsync(cancellationToken).AsTask();
        await using var client = await transport.DialAsync(listener.Address, cancellationToken);
        await using var server = await accepting;
        Assert.That(server.RemoteAddress.ToString(), Does.StartWith("/ip6/::1/tcp/"));
        Assert.That(client.RemoteAddress, Is.EqualTo(listener.Address));
    }

    [Test]
    public async Task Dial_ToClosedPort_ThrowsTransportExceptionNamingTheAddress(CancellationToken cancellationToken)
    {
        var transport = new TcpTransport();
        Multiaddress closed;
        await using (var listener = await transport.ListenAsync(Loopback4, cancellationToken))
            closed = listener.Address;

        var thrown = Assert.ThrowsAsync<TransportException>(async () => await transport.DialAsync(closed, cancellationToken));
        Assert.That(thrown!.Message, Does.Contain(closed.ToString()).And.Contain("ConnectionRefused"));
    }

    [Test]
    public async Task Listen_OnPortInUse_ThrowsTransportExceptionNamingTheAddress(CancellationToken cancellationToken)
    {
        var transport = new TcpTransport();
        await using var first = await transport.ListenAsync(Loopback4, cancellationToken);

        var thrown = Assert.ThrowsAsync<TransportException>(async () => await transport.ListenAsync(first.Address, cancellationToken));
        Assert.That(thrown!.Message, Does.Contain(first.Address.ToString()).And.Contain("AddressAlreadyInUse"));
    }

    [TestCase("/ip4/127.0.0.1/udp/1234")]
    [TestCase("/ip4/127.0.0.1")]
    [TestCase("/ip4/127.0.0.1/tcp/0")]
    [TestCase("/ip4/127.0.0.1/tcp/80/ws")]
    [TestCase("/ip4/127.0.0.1/tcp/80/p2p-circuit")]
    [TestCase("/tcp/80")]
    [TestCase("/memory/node-a")]
    [TestCase("/dnsaddr/example.com/tcp/1")]
    [TestCase("/p2p/" + PeerIdText)]
    [TestCase("/ip4/127.0.0.1/tcp/80/p2p/" + PeerIdText + "/tcp/1")]
    [TestCase("/")]
    public void CanDial_IsFalse_AndDialThrows_ForUnsupportedAddresses(string text)
    {
        var transport = new TcpTransport();
        var address = Multiaddress.Parse(text);
        Assert.That(transport.CanDial(address), Is.False);
        Assert.That(async () => await transport.DialAsync(address, CancellationToken.None),
            Throws.TypeOf<TransportException>().With.Message.Contains(address.ToString()));
    }

    [TestCase("/ip4/127.0.0.1/tcp/0", true)]
    [TestCase("/ip6/::/tcp/4001", true)]
    [TestCase("/dns4/localhost/tcp/0", true)]
    [TestCase("/ip4/127.0.0.1/udp/0", false)]
    [TestCase("/memory/x", false)]
    [TestCase("/ip4/127.0.0.1/tcp/0/ws", false)]
    public void CanListen_AcceptsOnlyHostAndTcp(string text, bool expected)
    {
        Assert.That(new TcpTransport().CanListen(Multiaddress.Parse(text)), Is.EqualTo(expected));
    }

    [TestCase("/ip4/1.2.3.4/tcp/1", true)]
    [TestCase("/ip6/::1/tcp/1", true)]
    [TestCase("/dns/example.com/tcp/1", true)]
    [TestCase("/dns6/example.com/tcp/1/p2p/" + PeerIdText, true)]
    public void CanDial_AcceptsHostTcpAndOptionalPeerId(string text, bool expected)
    {
        Assert.That(new TcpTransport().CanDial(Multiaddress.Parse(text)), Is.EqualTo(expected));
    }

    [Test]
    public async Task Dispose_ReleasesAPendingAccept_WithObjectDisposed(CancellationToken cancellationToken)
    {
        var listener = await new TcpTransport().ListenAsync(Loopback4, cancellationToken);
        var pending = listener.AcceptAsync(cancellationToken).AsTask();
        Assert.That(pending.IsCompleted, Is.False);

        await listener.DisposeAsync();

        Assert.That(async () => await pending, Throws.InstanceOf<ObjectDisposedException>());
        Assert.That(async () => await listener.AcceptAsync(cancellationToken), Throws.InstanceOf<ObjectDisposedException>());
        Assert.That(async () => await listener.DisposeAsync(), Throws.Nothing);
    }

    [Test]
    public async Task Dispose_FreesThePort_ForANewListener(CancellationToken cancellationToken)
    {
        var transport = new TcpTransport();
        var first = await transport.ListenAsync(Loopback4, cancellationToken);
        var address = first.Address;
        await first.DisposeAsync();

        await using var second = await transport.ListenAsync(address, cancellationToken);
        Assert.That(second.Address, Is.EqualTo(address));
    }

    [Test]
    public async Task Accept_CancelledByCaller_ThrowsCancellation_AndListenerKeepsWorking(CancellationToken cancellationToken)
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(Loopback4, cancellationToken);
        using (var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            var pending = listener.AcceptAsync(cancel.Token).AsTask();
            await cancel.CancelAsync();
            Assert.That(async () => await pending, Throws.InstanceOf<OperationCanceledException>());
        }

        var accepting = listener.AcceptAsync(cancellationToken).AsTask();
        await using var client = await transport.DialAsync(listener.Address, cancellationToken);
        await using var server = await accepting;
        Assert.That(server.RemoteAddress, Is.EqualTo(client.LocalAddress));
    }

    [Test]
    public async Task Accept_ServesManyDialsInTurn(CancellationToken cancellationToken)
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(Loopback4, cancellationToken);
        var clients = new List<RawConnection>();
        var servers = new List<RawConnection>();
        for (var i = 0; i < 5; i++) clients.Add(await transport.DialAsync(listener.Address, cancellationToken));
        for (var i = 0; i < 5; i++) servers.Add(await listener.AcceptAsync(cancellationToken));

        Assert.That(servers.Select(s => s.RemoteAddress), Is.EquivalentTo(clients.Select(c => c.LocalAddress)));
        foreach (var connection in clients.Concat(servers)) await connection.DisposeAsync();
    }

    [Test]
    public void Dial_UnresolvableName_ThrowsTransportExceptionNamingTheHost()
    {
        var transport = new TcpTransport(new TcpTransportOptions
        {
            Resolver = (_, _, _) => Task.FromException<IPAddress[]>(new SocketException((int)SocketError.HostNotFound)),
        });
        var address = Multiaddress.Parse("/dns4/no-such-host.invalid/tcp/4001");

        Assert.That(async () => await transport.DialAsync(address, CancellationToken.None),
            Throws.TypeOf<TransportException>().With.Message.Contains("cannot resolve 'no-such-host.invalid'").And.Message.Contains("HostNotFound"));
    }

    [TestCase("dns4", "::1", "no IPv4 address")]
    [TestCase("dns6", "127.0.0.1", "no IPv6 address")]
    [TestCase("dns6", "::ffff:127.0.0.1", "no IPv6 address")]
    public void Dial_DnsFamily_KeepsOnlyThatFamily(string protocol, string resolved, string message)
    {
        var transport = new TcpTransport(new TcpTransportOptions
        {
            Resolver = (_, _, _) => Task.FromResult(new[] { IPAddress.Parse(resolved) }),
        });
        Assert.That(async () => await transport.DialAsync(Multiaddress.Parse($"/{protocol}/example.test/tcp/1"), CancellationToken.None),
            Throws.TypeOf<TransportException>().With.Message.Contains(message));
    }

    [TestCase(AddressScope.Public, "127.0.0.1")]
    [TestCase(AddressScope.Public, "10.1.2.3,192.168.1.1,127.0.0.1")]
    [TestCase(AddressScope.Private, "127.0.0.1,169.254.1.1")]
    [TestCase(AddressScope.LinkLocal, "127.0.0.1,::1")]
    public void Dial_RefusesANameThatResolvesOnlyNarrowerThanItMay(AddressScope narrowest, string resolved)
    {
        // DNS rebinding: a name a public peer gave us that resolves to our loopback or LAN.
        var transport = new TcpTransport(new TcpTransportOptions
        {
            Resolver = (_, _, _) => Task.FromResult(resolved.Split(',').Select(IPAddress.Parse).ToArray()),
        });
        Assert.That(async () => await transport.DialAsync(Multiaddress.Parse("/dns/rebind.example/tcp/22"), narrowest, CancellationToken.None),
            Throws.TypeOf<TransportException>().With.Message.Contains("resolves only to addresses narrower than " + narrowest));
    }

    [Test]
    public async Task Dial_ToAnIpAddress_IsNotCheckedAgainstTheScope(CancellationToken cancellationToken)
    {
        // The scope of an IP address is plain to whoever stored it (the peer store keeps only those it may name).
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(Loopback4, cancellationToken);
        var accepting = listener.AcceptAsync(cancellationToken).AsTask();
        await using var client = await transport.DialAsync(listener.Address, AddressScope.Public, cancellationToken);
        await using var server = await accepting;
        Assert.That(client.RemoteAddress, Is.EqualTo(listener.Address));
    }

    [Test]
    public async Task Dial_ToANameAnyScopeMayResolveTo_ReachesOurLoopback(CancellationToken cancellationToken)
    {
        // The operator's own names (a bootstrap peer, a compose service) may resolve anywhere.
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(Loopback4, cancellationToken);
        var port = listener.Address.TcpHostPort()!.Value.Port;
        var resolving = new TcpTransport(new TcpTransportOptions
        {
            Resolver = (_, _, _) => Task.FromResult(new[] { IPAddress.Loopback }),
        });
        var address = Multiaddress.Parse($"/dns4/worker.example/tcp/{port}");

        var accepting = listener.AcceptAsync(cancellationToken).AsTask();
        await using var client = await resolving.DialAsync(address, AddressScope.Loopback, cancellationToken);
        await using var server = await accepting;
        Assert.That(client.RemoteAddress, Is.EqualTo(listener.Address));
    }

    [TestCase("dns", AddressFamily.Unspecified)]
    [TestCase("dns4", AddressFamily.InterNetwork)]
    [TestCase("dns6", AddressFamily.InterNetworkV6)]
    public async Task Dial_Dns_AsksTheResolverForTheRightFamily_AndTriesEachAddress(string protocol, AddressFamily family, CancellationToken cancellationToken)
    {
        var transport = new TcpTransport();
        await using var listener = await transport.ListenAsync(Loopback4, cancellationToken);
        var port = listener.Address.TcpHostPort()!.Value.Port;
        var asked = new List<(string, AddressFamily)>();
        // A dead first address (closed port on ::1 or a refused 127.0.0.2) must not stop the dial.
        IPAddress[] answer = family == AddressFamily.InterNetworkV6
            ? [IPAddress.IPv6Loopback]
            : [IPAddress.Parse("127.0.0.2"), IPAddress.Loopback];
        var resolving = new TcpTransport(new TcpTransportOptions
        {
            Resolver = (host, f, _) =>
            {
                asked.Add((host, f));
                return Task.FromResult(answer);
            },
        });

        var address = Multiaddress.Parse($"/{protocol}/example.test/tcp/{port}");
        if (family == AddressFamily.InterNetworkV6)
        {
            // Nothing listens on [::1]:port, so every address fails and the error lists them.
            Assert.That(async () => await resolving.DialAsync(address, cancellationToken),
                Throws.TypeOf<TransportException>().With.Message.Contains("[::1]:" + port));
        }
        else
        {
            var accepting = listener.AcceptAsync(cancellationToken).AsTask();
            await using var client = await resolving.DialAsync(address, cancellationToken);
            await using var server = await accepting;
            Assert.That(client.RemoteAddress, Is.EqualTo(listener.Address));
        }
        Assert.That(asked, Is.EqualTo(new[] { ("example.test", family) }));
    }

    [Test]
    public void Dial_TimesOut_OnTheInjectedClock() => SimulationTest.Run(async sim =>
    {
        // The resolver never answers, so no socket is opened: the dial runs on the simulation executor.
        var resolverCalled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var transport = new TcpTransport(new TcpTransportOptions
        {
            TimeProvider = sim.Clock,
            ConnectTimeout = TimeSpan.FromSeconds(7),
            Resolver = async (_, _, ct) =>
            {
                resolverCalled.TrySetResult();
                await Task.Delay(Timeout.InfiniteTimeSpan, ct);
                return [];
            },
        });

        var dial = transport.DialAsync(Multiaddress.Parse("/dns4/slow.test/tcp/1"), CancellationToken.None).AsTask();
        await resolverCalled.Task;
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(7) - TimeSpan.FromTicks(1));
        Assert.That(dial.IsCompleted, Is.False, "not before the connect timeout");

        await sim.Clock.AdvanceAsync(TimeSpan.FromTicks(1));

        await Assert.ThatAsync(() => dial, Throws.TypeOf<TransportException>().With.Message.Contains("timed out").And.Message.Contains("/dns4/slow.test/tcp/1"));
    });

    [Test]
    public async Task Dial_CancelledByCaller_ThrowsCancellationNotTransportException(CancellationToken cancellationToken)
    {
        var resolverCalled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var transport = new TcpTransport(new TcpTransportOptions
        {
            Resolver = async (_, _, ct) =>
            {
                resolverCalled.TrySetResult();
                await Task.Delay(Timeout.InfiniteTimeSpan, ct);
                return [];
            },
        });
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var dial = transport.DialAsync(Multiaddress.Parse("/dns4/slow.test/tcp/1"), cancel.Token).AsTask();
        await resolverCalled.Task.WaitAsync(cancellationToken);

        await cancel.CancelAsync();

        Assert.That(async () => await dial, Throws.InstanceOf<OperationCanceledException>());
    }

    [Test]
    public void Constructor_RejectsNonsenseOptions()
    {
        Assert.That(() => new TcpTransport(new TcpTransportOptions { ConnectTimeout = TimeSpan.Zero }), Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.That(() => new TcpTransport(new TcpTransportOptions { ReceiveBufferSize = 0 }), Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.That(() => new TcpTransport(new TcpTransportOptions { SendBufferSize = -1 }), Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.That(() => new TcpTransport(new TcpTransportOptions { ListenBacklog = 0 }), Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.That(() => new TcpTransport(new TcpTransportOptions { ConnectTimeout = Timeout.InfiniteTimeSpan }), Throws.Nothing);
    }

    private static async Task WriteAndShutdownAsync(Stream stream, byte[] data, CancellationToken cancellationToken)
    {
        // Uneven slices, so the reader sees arbitrary segment boundaries.
        for (var offset = 0; offset < data.Length;)
        {
            var size = Math.Min(data.Length - offset, 1 + (int)((long)offset * 7919 % 65536));
            await stream.WriteAsync(data.AsMemory(offset, size), cancellationToken);
            offset += size;
        }
        await stream.FlushAsync(cancellationToken);
        ((NetworkStream)stream).Socket.Shutdown(SocketShutdown.Send);
    }

    private static async Task<byte[]> ReadToEndAsync(Stream stream, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        await stream.CopyToAsync(buffer, cancellationToken);
        return buffer.ToArray();
    }
}
