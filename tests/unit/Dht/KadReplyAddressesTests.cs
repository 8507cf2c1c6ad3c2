using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Dht.Proto;

namespace P2PInference.Tests.Unit.Dht;

/// <summary>Which addresses of the peers a kad reply names are taken, by the scope of the address the replier was reached at.</summary>
[TestFixture]
public sealed class KadReplyAddressesTests
{
    private static readonly string[] OneOfEachScope =
        ["/ip4/127.0.0.1/tcp/1", "/ip4/169.254.1.1/tcp/1", "/ip4/192.168.1.1/tcp/1", "/ip4/198.51.100.1/tcp/1", "/memory/alice"];

    private static string[] Taken(AddressScope replier, params string[] addresses)
    {
        var reply = new Message { Type = Message.Types.MessageType.GetProviders };
        reply.CloserPeers.Add(KadMessageCodec.FromPeer(DhtTestPeers.Get(1), addresses.Select(Multiaddress.Parse), connected: false));
        reply.ProviderPeers.Add(KadMessageCodec.FromPeer(DhtTestPeers.Get(2), addresses.Select(Multiaddress.Parse), connected: false));

        KadReplyAddresses.Restrict(reply, replier);

        var closer = reply.CloserPeers[0].Addrs.Select(a => Multiaddress.FromBytes(a.Span).ToString()).ToArray();
        var providers = reply.ProviderPeers[0].Addrs.Select(a => Multiaddress.FromBytes(a.Span).ToString()).ToArray();
        Assert.That(providers, Is.EqualTo(closer), "providers are taken as closer peers are");
        return closer;
    }

    [Test]
    public void APublicReplier_NamesOnlyPublicAddresses() =>
        Assert.That(Taken(AddressScope.Public, OneOfEachScope), Is.EqualTo(new[] { "/ip4/198.51.100.1/tcp/1", "/memory/alice" }));

    [Test]
    public void AReplierOnTheLan_NamesLanAndPublicAddresses_ButNotLinkLocalOrLoopbackOnes() =>
        Assert.That(Taken(AddressScope.Private, OneOfEachScope), Is.EqualTo(new[] { "/ip4/192.168.1.1/tcp/1", "/ip4/198.51.100.1/tcp/1", "/memory/alice" }));

    [Test]
    public void AReplierOnLoopback_NamesAnyAddress() =>
        Assert.That(Taken(AddressScope.Loopback, OneOfEachScope), Is.EqualTo(OneOfEachScope));

    [Test]
    public void APublicReplier_CannotNameOurLoopbackOrLanThroughADnsNameThatIsAnAddress() =>
        Assert.That(Taken(AddressScope.Public, "/dns4/127.0.0.1/tcp/22", "/dns4/2130706433/tcp/22", "/dns6/::1/tcp/22",
                "/dns4/169.254.169.254/tcp/80", "/dns/10.0.0.1/tcp/80", "/dns4/0x7f.0x1/tcp/22", "/dns4/boot.example.com/tcp/4001"),
            Is.EqualTo(new[] { "/dns4/boot.example.com/tcp/4001" }));

    [Test]
    public void AtMostEightAddressesAreTakenPerNamedPeer_TheFirstAllowedOnes()
    {
        var addresses = Enumerable.Range(1, 16).Select(i => i % 2 == 0 ? $"/ip4/10.0.0.{i}/tcp/1" : $"/ip4/198.51.100.{i}/tcp/1").ToArray();

        Assert.That(Taken(AddressScope.Loopback, addresses), Is.EqualTo(addresses[..KadReplyAddresses.MaxAddressesPerNamedPeer]));
        Assert.That(Taken(AddressScope.Public, addresses), Is.EqualTo(addresses.Where(a => a.Contains("198.51.100", StringComparison.Ordinal))
            .Take(KadReplyAddresses.MaxAddressesPerNamedPeer)));
    }
}
