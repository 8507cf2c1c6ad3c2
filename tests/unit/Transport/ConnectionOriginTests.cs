using P2PInference.Facilities.Net.Host;
using P2PInference.TestKit.Network;
using P2PInference.Tests.Unit.Support;

namespace P2PInference.Tests.Unit.Transport;

/// <summary>
/// <see cref="PeerConnection.Origin"/>: the origin the DHT's stores count a peer's writes under, so that one
/// machine cycling identities fills only its share. (TCP loopback, which has none, is in the integration tier.)
/// </summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class ConnectionOriginTests
{
    private EchoHosts _hosts = null!;

    [SetUp]
    public void Create() => _hosts = new EchoHosts();

    [TearDown]
    public ValueTask DisposeAsync() => _hosts.DisposeAsync();

    private async Task<(PeerConnection Outbound, PeerConnection Inbound)> ConnectAsync(bool inboundPeersArePublic, CancellationToken ct)
    {
        var listener = await _hosts.StartAsync("listener", ct, inboundPeersArePublic: inboundPeersArePublic);
        var dialer = await _hosts.StartAsync("dialer", ct);
        return await HostConnections.ConnectAsync(dialer, listener, ct);
    }

    [Test]
    public async Task EachEnd_CountsThePeerUnderTheAddressItReachesIt(CancellationToken ct)
    {
        var (outbound, inbound) = await ConnectAsync(inboundPeersArePublic: false, ct);

        Assert.That((outbound.Origin, inbound.Origin), Is.EqualTo(("/memory/listener", "/memory/dialer")));
    }

    [Test]
    public async Task BehindAProxy_AnInboundPeerHasNoOrigin_SinceItsAddressIsTheProxys(CancellationToken ct)
    {
        var (outbound, inbound) = await ConnectAsync(inboundPeersArePublic: true, ct);

        Assert.That(inbound.Origin, Is.Null);
        Assert.That(outbound.Origin, Is.EqualTo("/memory/listener"), "the dialer's own view is unchanged");
    }
}
