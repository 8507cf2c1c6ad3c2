using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Integration.Transport;

/// <summary>
/// A node behind source NAT or an address-hiding proxy sees every inbound peer at a private address;
/// <see cref="HostOptions.InboundPeersArePublic"/> makes it judge them as the public peers they are.
/// Real hosts on TCP loopback, where every peer is on our own machine and so may name our loopback.
/// </summary>
[CancelAfter(20000)]
public sealed class InboundPeersArePublicTests
{
    private static async Task<(P2PHost Listener, P2PHost Dialer, PeerConnection Inbound)> ConnectAsync(bool inboundPeersArePublic, CancellationToken cancellationToken)
    {
        var listener = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()], InboundPeersArePublic = inboundPeersArePublic });
        await listener.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], cancellationToken);
        var dialer = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        await dialer.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], cancellationToken);
        var (_, inbound) = await HostConnections.ConnectAsync(dialer, listener, cancellationToken, identify: true);
        return (listener, dialer, inbound);
    }

    [Test]
    public async Task BehindAProxy_AnInboundPeerAtALoopbackAddress_CountsAsPublic_AndCannotNameOurLoopback(CancellationToken cancellationToken)
    {
        var (listener, dialer, inbound) = await ConnectAsync(inboundPeersArePublic: true, cancellationToken);
        await using var _ = listener;
        await using var __ = dialer;

        Assert.That(inbound.RemoteScope, Is.EqualTo(AddressScope.Public));
        Assert.That(listener.PeerStore.GetAddresses(dialer.PeerId), Is.Empty, "its listen addresses are all on our loopback");
        Assert.That(dialer.GetConnection(listener.PeerId)!.RemoteScope, Is.EqualTo(AddressScope.Loopback), "a peer we dialed is judged by its address");
    }

    [Test]
    public async Task ByDefault_AnInboundPeerAtALoopbackAddress_MayNameOurLoopback(CancellationToken cancellationToken)
    {
        var (listener, dialer, inbound) = await ConnectAsync(inboundPeersArePublic: false, cancellationToken);
        await using var _ = listener;
        await using var __ = dialer;

        Assert.That(inbound.RemoteScope, Is.EqualTo(AddressScope.Loopback));
        Assert.That(listener.PeerStore.GetAddresses(dialer.PeerId), Does.Contain(dialer.ListenAddresses[0]));
        Assert.That(inbound.Origin, Is.Null, "loopback is the operator's own machine: no share of the DHT's stores applies");
    }
}
