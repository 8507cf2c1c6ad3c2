using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Tests.Unit.Dht;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.Tests.Unit.Protocols;

/// <summary>The peer store's bounds: addresses from third parties never displace the peer's own, addresses expire, a full store forgets the least recently heard of.</summary>
[TestFixture]
public sealed class PeerStoreTests
{
    private static Multiaddress Address(int i) => Multiaddress.Parse($"/ip4/10.0.{i / 250}.{i % 250 + 1}/tcp/4001");

    private static Multiaddress[] Addresses(int from, int count) => Enumerable.Range(from, count).Select(Address).ToArray();

    [Test]
    public void ThirdPartyFlood_NeverDisplacesTheAddressesThePeerToldUsItself()
    {
        var store = new PeerStore(new FakeTimeProvider());
        var auth = DhtTestPeers.Get(1);
        var own = Addresses(0, 2);
        store.AddAddresses(auth, own, AddressSource.Self);

        store.AddAddresses(auth, Addresses(1000, PeerStore.MaxAddressesPerPeer * 3));

        var known = store.GetAddresses(auth);
        Assert.That(known.Take(2), Is.EqualTo(own), "the peer's own addresses are kept, and dialled first");
        Assert.That(known, Has.Count.EqualTo(PeerStore.MaxAddressesPerPeer));
    }

    [Test]
    public void SelfReportedAddresses_DisplaceThirdPartyOnes_WhenTheListIsFull()
    {
        var store = new PeerStore(new FakeTimeProvider());
        var peer = DhtTestPeers.Get(1);
        store.AddAddresses(peer, Addresses(1000, PeerStore.MaxAddressesPerPeer));

        store.AddAddresses(peer, [Address(7)], AddressSource.Self);

        Assert.That(store.GetAddresses(peer)[0], Is.EqualTo(Address(7)));
        Assert.That(store.GetAddresses(peer), Has.Count.EqualTo(PeerStore.MaxAddressesPerPeer));
    }

    [Test]
    public void HearingASelfReportedAddressFromAThirdParty_DoesNotDemoteIt()
    {
        var time = new FakeTimeProvider();
        var store = new PeerStore(time);
        var peer = DhtTestPeers.Get(1);
        store.AddAddresses(peer, [Address(1)], AddressSource.Self);
        store.AddAddresses(peer, [Address(1)]);

        time.Advance(PeerStore.ThirdPartyAddressTtl);

        Assert.That(store.GetAddresses(peer), Is.EqualTo(new[] { Address(1) }));
    }

    [Test]
    public void Addresses_ExpireAfterTheirSourcesTtl_UnlessHeardAgain()
    {
        var time = new FakeTimeProvider();
        var store = new PeerStore(time);
        var peer = DhtTestPeers.Get(1);
        store.AddAddresses(peer, [Address(1)], AddressSource.Self);
        store.AddAddresses(peer, [Address(2)]);

        time.Advance(PeerStore.ThirdPartyAddressTtl);
        Assert.That(store.GetAddresses(peer), Is.EqualTo(new[] { Address(1) }), "the third party's claim lapsed");

        time.Advance(PeerStore.SelfAddressTtl - PeerStore.ThirdPartyAddressTtl - TimeSpan.FromMinutes(1));
        store.AddAddresses(peer, [Address(1)], AddressSource.Self);
        time.Advance(TimeSpan.FromMinutes(2));
        Assert.That(store.GetAddresses(peer), Is.EqualTo(new[] { Address(1) }), "hearing it again extended it");
    }

    [Test]
    public void FullStore_ForgetsAPeerOnlyHeardOfFromOthers_BeforeOneThatSpokeForItself()
    {
        var store = new PeerStore(new FakeTimeProvider(), capacity: 3);
        var real = DhtTestPeers.Get(1);
        store.AddAddresses(real, [Address(1)], AddressSource.Self);
        store.SetProtocols(real, ["/p2pinference/rpc/1.0.0"], "worker/1");

        for (var i = 2; i < 50; i++) store.AddAddresses(DhtTestPeers.Get(i), [Address(i)]);

        Assert.That(store.Count, Is.EqualTo(3));
        Assert.That(store.GetAddresses(real), Is.EqualTo(new[] { Address(1) }), "a flood of rumoured peers did not push out the one we know");
        Assert.That(store.GetAddresses(DhtTestPeers.Get(49)), Is.EqualTo(new[] { Address(49) }), "new peers are still learned");
    }
}
