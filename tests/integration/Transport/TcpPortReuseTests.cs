using System.Net.Sockets;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Tests.Integration.Transport;

/// <summary>
/// TCP port reuse (<see cref="TcpTransportOptions.ReusePort"/>): a node's outbound connections
/// leave from its listen port, so the address a remote observes (and identify reports) is one that
/// reaches the node's listener, which is what a NAT's mapping and hole punching rely on.
/// </summary>
[CancelAfter(20000)]
public sealed class TcpPortReuseTests
{
    private static readonly Multiaddress Loopback4 = Multiaddress.Parse("/ip4/127.0.0.1/tcp/0");

    /// <summary>Port reuse, which TCP hole punching needs, is built for Linux only: elsewhere it is missing, and these tests say so.</summary>
    [SetUp]
    public void OnLinuxOnly()
    {
        if (!OperatingSystem.IsLinux()) Assert.Fail("port reuse (which TCP hole punching needs) is implemented for Linux only; on this system dials leave from ephemeral ports");
    }

    [Test]
    public async Task Dial_LeavesFromTheListenPort_SoTheRemoteObservesTheListenAddress(CancellationToken cancellationToken)
    {
        var a = new TcpTransport();
        var b = new TcpTransport();
        await using var listenerA = await a.ListenAsync(Loopback4, cancellationToken);
        await using var listenerB = await b.ListenAsync(Loopback4, cancellationToken);

        var accepting = listenerB.AcceptAsync(cancellationToken).AsTask();
        await using var client = await a.DialAsync(listenerB.Address, cancellationToken);
        await using var server = await accepting;

        Assert.That(client.LocalAddress, Is.EqualTo(listenerA.Address));
        Assert.That(server.RemoteAddress, Is.EqualTo(listenerA.Address), "what B observes, and identify would report, is A's listen address");
        await AssertCarriesBothWaysAsync(client, server, cancellationToken);
    }

    [Test]
    public async Task Dial_FromAnIPv6Listener_LeavesFromItsPort(CancellationToken cancellationToken)
    {
        Assume.That(Socket.OSSupportsIPv6, Is.True, "this machine has no IPv6");
        var a = new TcpTransport();
        var b = new TcpTransport();
        // Only an IPv4 listener besides: a dial to an IPv6 address leaves from the listener of that family.
        await using var listenerA4 = await a.ListenAsync(Loopback4, cancellationToken);
        await using var listenerA6 = await a.ListenAsync(Multiaddress.Parse("/ip6/::1/tcp/0"), cancellationToken);
        await using var listenerB = await b.ListenAsync(Multiaddress.Parse("/ip6/::1/tcp/0"), cancellationToken);

        var accepting = listenerB.AcceptAsync(cancellationToken).AsTask();
        await using var client = await a.DialAsync(listenerB.Address, cancellationToken);
        await using var server = await accepting;

        Assert.That(server.RemoteAddress, Is.EqualTo(listenerA6.Address));
    }

    [Test]
    public async Task Dial_FromAListenerOnTheUnspecifiedAddress_LeavesFromItsPort(CancellationToken cancellationToken)
    {
        var a = new TcpTransport();
        var b = new TcpTransport();
        await using var listenerA = await a.ListenAsync(Multiaddress.Parse("/ip4/0.0.0.0/tcp/0"), cancellationToken);
        await using var listenerB = await b.ListenAsync(Loopback4, cancellationToken);

        var accepting = listenerB.AcceptAsync(cancellationToken).AsTask();
        await using var client = await a.DialAsync(listenerB.Address, cancellationToken);
        await using var server = await accepting;

        var port = listenerA.Address.TcpHostPort()!.Value.Port;
        Assert.That(server.RemoteAddress.ToString(), Is.EqualTo($"/ip4/127.0.0.1/tcp/{port}"));
    }

    [Test]
    public async Task Dial_WithReusePortOff_OrWithoutAListener_UsesAnEphemeralPort(CancellationToken cancellationToken)
    {
        var off = new TcpTransport(new TcpTransportOptions { ReusePort = false });
        var notListening = new TcpTransport();
        var b = new TcpTransport();
        await using var listenerOff = await off.ListenAsync(Loopback4, cancellationToken);
        await using var listenerB = await b.ListenAsync(Loopback4, cancellationToken);

        var accepting = listenerB.AcceptAsync(cancellationToken).AsTask();
        await using var fromOff = await off.DialAsync(listenerB.Address, cancellationToken);
        await using var acceptedOff = await accepting;
        accepting = listenerB.AcceptAsync(cancellationToken).AsTask();
        await using var fromNotListening = await notListening.DialAsync(listenerB.Address, cancellationToken);
        await using var acceptedNotListening = await accepting;

        Assert.That(fromOff.LocalAddress, Is.Not.EqualTo(listenerOff.Address));
        await AssertCarriesBothWaysAsync(fromOff, acceptedOff, cancellationToken);
        await AssertCarriesBothWaysAsync(fromNotListening, acceptedNotListening, cancellationToken);
    }

    [Test]
    public async Task SecondDial_ToTheSameRemote_FallsBackToAnEphemeralPort_AndBothConnectionsWork(CancellationToken cancellationToken)
    {
        var a = new TcpTransport();
        var b = new TcpTransport();
        await using var listenerA = await a.ListenAsync(Loopback4, cancellationToken);
        await using var listenerB = await b.ListenAsync(Loopback4, cancellationToken);

        var accepting = listenerB.AcceptAsync(cancellationToken).AsTask();
        await using var first = await a.DialAsync(listenerB.Address, cancellationToken);
        await using var firstAccepted = await accepting;
        // The listen port already has a connection to B's listen port: the same four-tuple is taken.
        accepting = listenerB.AcceptAsync(cancellationToken).AsTask();
        await using var second = await a.DialAsync(listenerB.Address, cancellationToken);
        await using var secondAccepted = await accepting;

        Assert.That(first.LocalAddress, Is.EqualTo(listenerA.Address));
        Assert.That(second.LocalAddress, Is.Not.EqualTo(listenerA.Address));
        Assert.That(secondAccepted.RemoteAddress, Is.EqualTo(second.LocalAddress));
        await AssertCarriesBothWaysAsync(first, firstAccepted, cancellationToken);
        await AssertCarriesBothWaysAsync(second, secondAccepted, cancellationToken);
    }

    [Test]
    public async Task Dial_AfterAConnectionFromTheListenPortClosed_StillConnects(CancellationToken cancellationToken)
    {
        var a = new TcpTransport();
        var b = new TcpTransport();
        await using var listenerA = await a.ListenAsync(Loopback4, cancellationToken);
        await using var listenerB = await b.ListenAsync(Loopback4, cancellationToken);
        var accepting = listenerB.AcceptAsync(cancellationToken).AsTask();
        await using (var first = await a.DialAsync(listenerB.Address, cancellationToken))
        await using (var firstAccepted = await accepting)
        {
            Assert.That(first.LocalAddress, Is.EqualTo(listenerA.Address));
            // A closes first, so its end of the four-tuple lingers in TIME_WAIT.
            await first.DisposeAsync();
            Assert.That(await firstAccepted.Stream.ReadAsync(new byte[1], cancellationToken), Is.Zero);
        }

        accepting = listenerB.AcceptAsync(cancellationToken).AsTask();
        await using var again = await a.DialAsync(listenerB.Address, cancellationToken);
        await using var againAccepted = await accepting;
        await AssertCarriesBothWaysAsync(again, againAccepted, cancellationToken);
    }

    [Test]
    public async Task Listen_OnAPortAnotherTransportListensOn_StillFails(CancellationToken cancellationToken)
    {
        await using var first = await new TcpTransport().ListenAsync(Loopback4, cancellationToken);

        // SO_REUSEPORT on both would let the second join the first and take half its connections.
        Assert.That(async () => await new TcpTransport().ListenAsync(first.Address, cancellationToken),
            Throws.TypeOf<TransportException>().With.Message.Contains("AddressAlreadyInUse"));
    }

    [Test]
    public async Task Listen_AgainOnAPortItsDialsLeftInTimeWait_Succeeds(CancellationToken cancellationToken)
    {
        var a = new TcpTransport();
        var b = new TcpTransport();
        await using var listenerB = await b.ListenAsync(Loopback4, cancellationToken);
        var listenerA = await a.ListenAsync(Loopback4, cancellationToken);
        var address = listenerA.Address;
        var accepting = listenerB.AcceptAsync(cancellationToken).AsTask();
        await using (var dialled = await a.DialAsync(listenerB.Address, cancellationToken))
        await using (var accepted = await accepting)
        {
            Assert.That(dialled.LocalAddress, Is.EqualTo(address));
            await dialled.DisposeAsync();
            Assert.That(await accepted.Stream.ReadAsync(new byte[1], cancellationToken), Is.Zero);
        }
        await listenerA.DisposeAsync();

        // A node restarted on its fixed port: the dial's TIME_WAIT on that port must not block it.
        await using var restarted = await new TcpTransport().ListenAsync(address, cancellationToken);
        Assert.That(restarted.Address, Is.EqualTo(address));
    }

    [Test]
    [Repeat(5)]
    public async Task TwoTransports_DialingEachOtherAtOnce_EachGetAWorkingConnection(CancellationToken cancellationToken)
    {
        var a = new TcpTransport();
        var b = new TcpTransport();
        await using var listenerA = await a.ListenAsync(Loopback4, cancellationToken);
        await using var listenerB = await b.ListenAsync(Loopback4, cancellationToken);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var acceptedByA = listenerA.AcceptAsync(stop.Token).AsTask();
        var acceptedByB = listenerB.AcceptAsync(stop.Token).AsTask();

        var dialA = a.DialAsync(listenerB.Address, cancellationToken).AsTask();
        var dialB = b.DialAsync(listenerA.Address, cancellationToken).AsTask();
        await Task.WhenAll(dialA, dialB);
        await using var fromA = await dialA;
        await using var fromB = await dialB;

        if (fromA.LocalAddress == fromB.RemoteAddress && fromA.RemoteAddress == fromB.LocalAddress)
        {
            // Both SYNs crossed (TCP simultaneous open): the two dials are the two ends of one connection.
            await AssertCarriesBothWaysAsync(fromA, fromB, cancellationToken);
            await stop.CancelAsync();
            return;
        }
        // Otherwise each dial was accepted by the other's listener; the later one left from an ephemeral port.
        await using var atB = await acceptedByB;
        await using var atA = await acceptedByA;
        Assert.That(atB.RemoteAddress, Is.EqualTo(fromA.LocalAddress));
        Assert.That(atA.RemoteAddress, Is.EqualTo(fromB.LocalAddress));
        await AssertCarriesBothWaysAsync(fromA, atB, cancellationToken);
        await AssertCarriesBothWaysAsync(fromB, atA, cancellationToken);
    }

    private static async Task AssertCarriesBothWaysAsync(RawConnection one, RawConnection other, CancellationToken cancellationToken)
    {
        byte[] ping = [1, 2, 3], pong = [4, 5];
        await one.Stream.WriteAsync(ping, cancellationToken);
        await other.Stream.WriteAsync(pong, cancellationToken);
        Assert.That(await ReadExactlyAsync(other.Stream, ping.Length, cancellationToken), Is.EqualTo(ping));
        Assert.That(await ReadExactlyAsync(one.Stream, pong.Length, cancellationToken), Is.EqualTo(pong));
    }

    private static async Task<byte[]> ReadExactlyAsync(Stream stream, int count, CancellationToken cancellationToken)
    {
        var buffer = new byte[count];
        await stream.ReadExactlyAsync(buffer, cancellationToken);
        return buffer;
    }
}
