using System.Net;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Tests.Integration.Transport;

/// <summary>
/// A worker started with <c>--listen /ip4/0.0.0.0/tcp/4001</c> listens on every address of its machine. Peers must be
/// told those addresses, not 0.0.0.0: a peer that dials 0.0.0.0 reaches its own machine. Real hosts on TCP.
/// </summary>
[CancelAfter(20000)]
public sealed class UnspecifiedListenAddressTests
{
    [Test]
    public async Task APeer_IsToldTheMachinesAddresses_WithTheBoundPort_AndReachesTheNodeOnOne(CancellationToken cancellationToken)
    {
        await using var node = new P2PHost(new HostOptions
        {
            Identity = KeyPair.Generate(),
            Transports = [new TcpTransport()],
            MachineAddresses = () => [IPAddress.Parse("192.0.2.7"), IPAddress.Loopback],
        });
        await node.StartAsync([Multiaddress.Parse("/ip4/0.0.0.0/tcp/0")], cancellationToken);
        var port = node.ListenAddresses.Single().TcpHostPort()!.Value.Port;
        await using var peer = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });

        var connection = await peer.ConnectAsync(node.AdvertisedAddresses[^1], cancellationToken);
        var told = await peer.IdentifyAsync(connection, cancellationToken);

        Assert.That(node.ListenAddresses.Single().ToString(), Is.EqualTo($"/ip4/0.0.0.0/tcp/{port}"), "bound on every address");
        Assert.That(told.ListenAddresses.Select(a => a.ToString()), Is.EqualTo(new[] { $"/ip4/192.0.2.7/tcp/{port}", $"/ip4/127.0.0.1/tcp/{port}" }));
        Assert.That(node.AdvertisedAddresses.Select(a => a.ToString()), Is.EqualTo(told.ListenAddresses.Select(a => $"{a}/p2p/{node.PeerId}")));
    }

    [Test]
    public async Task OnThisMachine_EveryAnnouncedAddressIsSpecified_AndLoopbackIsAmongThem(CancellationToken cancellationToken)
    {
        await using var node = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        await node.StartAsync([Multiaddress.Parse("/ip4/0.0.0.0/tcp/0")], cancellationToken);
        var port = node.ListenAddresses.Single().TcpHostPort()!.Value.Port;

        Assert.That(node.AnnouncedAddresses, Has.None.Matches<Multiaddress>(a => a.HasUnspecifiedHost));
        Assert.That(node.AnnouncedAddresses.Select(a => a.ToString()), Does.Contain($"/ip4/127.0.0.1/tcp/{port}"));
        Assert.That(node.AnnouncedAddresses, Has.All.Matches<Multiaddress>(a => a.TcpHostPort()!.Value.Port == port));
    }
}
