using System.Net;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Tests.Integration.Transport;

/// <summary>
/// DNS rebinding through the peer store: a name a peer gave us resolves, when we dial it, only within the
/// scope of the connection we heard it over. Real hosts on TCP loopback; the dialer's resolver maps
/// <c>worker.example</c> to 127.0.0.1, as an attacker's name would.
/// </summary>
[CancelAfter(20000)]
public sealed class DnsRebindingTests
{
    private static async Task<(P2PHost Dialer, P2PHost Target, Multiaddress Named)> StartAsync(CancellationToken cancellationToken)
    {
        var target = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        await target.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], cancellationToken);
        var port = target.ListenAddresses[0].TcpHostPort()!.Value.Port;
        var dialer = new P2PHost(new HostOptions
        {
            Identity = KeyPair.Generate(),
            Transports = [new TcpTransport(new TcpTransportOptions { Resolver = (_, _, _) => Task.FromResult(new[] { IPAddress.Loopback }) })],
        });
        return (dialer, target, Multiaddress.Parse($"/dns4/worker.example/tcp/{port}"));
    }

    [Test]
    public async Task ANameHeardOverAPublicConnection_IsNotDialedAtOurLoopback(CancellationToken cancellationToken)
    {
        var (dialer, target, named) = await StartAsync(cancellationToken);
        await using var _ = dialer;
        await using var __ = target;
        // What a kad reply from a peer reached on a public address would store.
        dialer.PeerStore.AddAddresses(target.PeerId, [named], AddressSource.ThirdParty, AddressScope.Public);

        Assert.That(async () => await dialer.ConnectAsync(target.PeerId, cancellationToken),
            Throws.TypeOf<TransportException>().With.Message.Contains("resolves only to addresses narrower than Public"));
        Assert.That(dialer.GetConnection(target.PeerId), Is.Null);
    }

    [Test]
    public async Task ANameHeardOverALoopbackConnection_OrGivenByTheCaller_IsDialed(CancellationToken cancellationToken)
    {
        var (dialer, target, named) = await StartAsync(cancellationToken);
        await using var _ = dialer;
        await using var __ = target;

        await using (var given = await dialer.ConnectAsync(named.WithPeerId(target.PeerId), cancellationToken))
            Assert.That(given.RemotePeer, Is.EqualTo(target.PeerId), "the caller's own name may resolve anywhere");
        Assert.That(dialer.PeerStore.NarrowestDialScope(target.PeerId, named), Is.EqualTo(AddressScope.Loopback),
            "and stays dialable from the peer store");
    }

    [Test]
    public async Task ANameHeardOverALoopbackConnection_IsDialedFromThePeerStore(CancellationToken cancellationToken)
    {
        var (dialer, target, named) = await StartAsync(cancellationToken);
        await using var _ = dialer;
        await using var __ = target;
        // A peer on our own machine may name our loopback.
        dialer.PeerStore.AddAddresses(target.PeerId, [named], AddressSource.ThirdParty, AddressScope.Loopback);

        var connection = await dialer.ConnectAsync(target.PeerId, cancellationToken);
        Assert.That(connection.RemotePeer, Is.EqualTo(target.PeerId));
    }
}
