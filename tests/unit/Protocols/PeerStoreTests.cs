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
    public void ListenAddresses_ThePeerNoLongerLists_AreDropped_OthersStay()
    {
        var store = new PeerStore(new FakeTimeProvider());
        var peer = DhtTestPeers.Get(1);
        store.AddAddresses(peer, [Address(1)], AddressSource.Self, AddressScope.Public); // where we reached it (its NAT mapping)
        store.AddAddresses(peer, [Address(2)]); // named by a third party
        store.SetListenAddresses(peer, [Address(3), Address(4)], [Address(3), Address(4)], AddressScope.Public);

        store.SetListenAddresses(peer, [Address(3).WithPeerId(peer)], [Address(3)], AddressScope.Public);

        Assert.That(store.GetAddresses(peer), Is.EquivalentTo(new[] { Address(1), Address(2), Address(3) }),
            "only the address it listed and took back went; a /p2p suffix names the same address");
    }

    [Test]
    public void ListenAddresses_ThatAreEmpty_ChangeNothing_AndOnesListedButNotAccepted_StillCountAsListed()
    {
        var store = new PeerStore(new FakeTimeProvider());
        var peer = DhtTestPeers.Get(1);
        store.SetListenAddresses(peer, [Address(3), Address(4)], [Address(3), Address(4)], AddressScope.Public);

        store.SetListenAddresses(peer, [], [], AddressScope.Public);
        Assert.That(store.GetAddresses(peer), Is.EquivalentTo(new[] { Address(3), Address(4) }), "a push without addresses keeps them");

        // Heard over a connection whose scope does not accept Address(4) again: the peer still lists it, so it stays.
        store.SetListenAddresses(peer, [Address(3), Address(4)], [Address(3)], AddressScope.Public);
        Assert.That(store.GetAddresses(peer), Is.EquivalentTo(new[] { Address(3), Address(4) }));
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

    [Test]
    public void NarrowestDialScope_IsTheNarrowestConnectionAnAddressWasHeardOver_AndPublicByDefault()
    {
        var store = new PeerStore(new FakeTimeProvider());
        var peer = DhtTestPeers.Get(1);
        var named = Multiaddress.Parse("/dns4/worker.example/tcp/4001");
        var other = Multiaddress.Parse("/dns4/other.example/tcp/4001");

        Assert.That(store.NarrowestDialScope(peer, named), Is.EqualTo(AddressScope.Public), "unknown: the strictest");
        store.AddAddresses(peer, [named]);
        Assert.That(store.NarrowestDialScope(peer, named), Is.EqualTo(AddressScope.Public), "a third party's claim, scope unsaid: public");

        // A LAN peer may name it for the LAN; a public peer naming it again does not take that away,
        // and a refresh from the peer itself keeps it too.
        store.AddAddresses(peer, [named], AddressSource.ThirdParty, AddressScope.Private);
        store.AddAddresses(peer, [named], AddressSource.ThirdParty, AddressScope.Public);
        store.AddAddresses(peer, [named], AddressSource.Self, AddressScope.Public);
        Assert.That(store.NarrowestDialScope(peer, named), Is.EqualTo(AddressScope.Private));
        Assert.That(store.NarrowestDialScope(peer, Multiaddress.Parse($"/dns4/worker.example/tcp/4001/p2p/{peer}")), Is.EqualTo(AddressScope.Private),
            "a /p2p suffix names the same address");

        store.AddAddresses(peer, [other], AddressSource.Self, AddressScope.Loopback);
        Assert.That(store.NarrowestDialScope(peer, other), Is.EqualTo(AddressScope.Loopback));
        Assert.That(store.NarrowestDialScope(DhtTestPeers.Get(2), named), Is.EqualTo(AddressScope.Public), "another peer's: unknown");
    }

    /// <summary>An identify answer's worth of protocol names: about 20 KiB as the store holds them.</summary>
    private static string[] ManyProtocols(int peer) =>
        Enumerable.Range(0, 100).Select(i => $"/peer-{peer}/protocol-{i}/".PadRight(100, 'x')).ToArray();

    [Test]
    public void AHostCyclingIdentities_WithLargeIdentifyAnswers_IsHeldToTheByteBudget()
    {
        const long budget = 256 * 1024;
        var store = new PeerStore(new FakeTimeProvider(), capacity: 100_000, maxBytes: budget);

        for (var i = 0; i < 200; i++)
        {
            store.AddAddresses(DhtTestPeers.Get(i), [Address(i)], AddressSource.Self);
            store.SetProtocols(DhtTestPeers.Get(i), ManyProtocols(i), "rogue/1");
        }

        Assert.That(store.Bytes, Is.LessThanOrEqualTo(budget));
        Assert.That(store.Count, Is.InRange(5, 20), "a count cap of 100,000 alone would have kept all 200");
        Assert.That(store.GetProtocols(DhtTestPeers.Get(199)), Has.Count.EqualTo(100), "the latest peers stay");
        Assert.That(store.GetProtocols(DhtTestPeers.Get(0)), Is.Empty, "the least recently heard of went");
    }

    [Test]
    public void OverTheByteBudget_APeerOnlyHeardOfFromOthersGoesFirst()
    {
        var store = new PeerStore(new FakeTimeProvider(), capacity: 100_000, maxBytes: 48 * 1024);
        var real = DhtTestPeers.Get(1);
        store.AddAddresses(real, [Address(1)], AddressSource.Self);
        store.SetProtocols(real, ["/p2pinference/rpc/1.0.0"], "worker/1");

        for (var i = 2; i < 300; i++) store.AddAddresses(DhtTestPeers.Get(i), Addresses(i * 32, 8));

        Assert.That(store.Bytes, Is.LessThanOrEqualTo(48 * 1024));
        Assert.That(store.GetAddresses(real), Is.EqualTo(new[] { Address(1) }), "a flood of rumoured peers did not push out the one we know");
        Assert.That(store.GetAddresses(DhtTestPeers.Get(299)), Has.Count.EqualTo(8), "new peers are still learned");
    }

    [Test]
    public void APeerLargerThanTheWholeBudget_IsStillKept_AloneAndWithinItsOwnCaps()
    {
        var store = new PeerStore(new FakeTimeProvider(), capacity: 100, maxBytes: 1024);
        store.AddAddresses(DhtTestPeers.Get(1), [Address(1)], AddressSource.Self);

        store.SetProtocols(DhtTestPeers.Get(2), ManyProtocols(2), "big/1");

        Assert.That(store.Count, Is.EqualTo(1));
        Assert.That(store.GetProtocols(DhtTestPeers.Get(2)), Has.Count.EqualTo(100), "the peer being identified is the one its caller uses next");
    }

    [Test]
    public void Bytes_FollowWhatEachPeerHolds_AndReturnToZero()
    {
        var time = new FakeTimeProvider();
        var store = new PeerStore(time);
        var peer = DhtTestPeers.Get(1);
        store.AddAddresses(peer, Addresses(0, 4));
        store.AddAddresses(DhtTestPeers.Get(2), [Address(9)], AddressSource.Self);
        var withFour = store.Bytes;

        store.SetProtocols(peer, ManyProtocols(1), "agent/1");
        var identified = store.Bytes;
        Assert.That(identified - withFour, Is.GreaterThan(100 * 200), "a hundred names of a hundred characters");
        store.SetProtocols(peer, ["/ipfs/id/1.0.0"], "agent/1");
        Assert.That(store.Bytes, Is.LessThan(identified - 100 * 200), "a shorter answer replaces the longer one");

        time.Advance(PeerStore.ThirdPartyAddressTtl);
        var beforeLapse = store.Bytes;
        store.AddAddresses(peer, [Address(5)], AddressSource.Self);
        Assert.That(store.Bytes, Is.LessThan(beforeLapse), "four lapsed third-party addresses dropped, one added");

        Assert.That(store.Remove(peer), Is.True);
        Assert.That(store.Remove(DhtTestPeers.Get(2)), Is.True);
        Assert.That(store.Bytes, Is.Zero);
    }

    /// <summary>A peer that identified itself at <see cref="Address"/>(<paramref name="i"/>), as identify records it.</summary>
    private static void Identified(PeerStore store, int i)
    {
        store.AddAddresses(DhtTestPeers.Get(i), [Address(i)], AddressSource.Self);
        store.SetProtocols(DhtTestPeers.Get(i), ["/ipfs/kad/1.0.0"], "agent/1");
    }

    [Test]
    public void AFloodOfIdentities_DoesNotPushOutPeersInUse_AndTheRestStillGoLeastRecentFirst()
    {
        var store = new PeerStore(new FakeTimeProvider(), capacity: 10);
        var inUse = new HashSet<PeerId> { DhtTestPeers.Get(1), DhtTestPeers.Get(2) };
        store.Retain(inUse.Contains);
        for (var i = 1; i <= 10; i++) Identified(store, i);

        // Each identity spoke for itself, as identify makes it: recency alone would forget peers 1 and 2 first.
        for (var i = 100; i < 300; i++) Identified(store, i);

        Assert.That(store.Count, Is.EqualTo(10));
        Assert.That(store.GetAddresses(DhtTestPeers.Get(1)), Is.EqualTo(new[] { Address(1) }));
        Assert.That(store.GetAddresses(DhtTestPeers.Get(2)), Is.EqualTo(new[] { Address(2) }));
        Assert.That(store.GetProtocols(DhtTestPeers.Get(2)), Is.Not.Empty);
        Assert.That(Enumerable.Range(292, 8).Select(i => store.GetAddresses(DhtTestPeers.Get(i)).Count), Is.All.EqualTo(1),
            "the eight most recent of the flood fill the rest");
        Assert.That(store.GetAddresses(DhtTestPeers.Get(3)), Is.Empty, "a peer not in use is forgotten as before");
    }

    [Test]
    public void OverTheByteBudget_PeersInUseStay()
    {
        const long budget = 256 * 1024;
        var store = new PeerStore(new FakeTimeProvider(), capacity: 100_000, maxBytes: budget);
        store.Retain(peer => peer == DhtTestPeers.Get(0));

        for (var i = 0; i < 200; i++)
        {
            store.AddAddresses(DhtTestPeers.Get(i), [Address(i)], AddressSource.Self);
            store.SetProtocols(DhtTestPeers.Get(i), ManyProtocols(i), "rogue/1");
        }

        Assert.That(store.Bytes, Is.LessThanOrEqualTo(budget));
        Assert.That(store.GetProtocols(DhtTestPeers.Get(0)), Has.Count.EqualTo(100), "the first peer, in use, stays");
        Assert.That(store.GetProtocols(DhtTestPeers.Get(1)), Is.Empty, "the next least recent went");
    }

    [Test]
    public void WhenEveryPeerIsInUse_ANewPeerIsStillLearned_AndTheStoreHoldsThemAll()
    {
        var store = new PeerStore(new FakeTimeProvider(), capacity: 3);
        store.Retain(_ => true);

        for (var i = 1; i <= 5; i++) Identified(store, i);

        Assert.That(store.Count, Is.EqualTo(5), "the checks' owners bound what they keep; the store does not drop it");
        Assert.That(Enumerable.Range(1, 5).Select(i => store.GetAddresses(DhtTestPeers.Get(i)).Count), Is.All.EqualTo(1));
    }

    [Test]
    public void ARetentionDisposed_LetsItsPeersBeForgotten_WhileAnotherStillKeepsItsOwn()
    {
        var store = new PeerStore(new FakeTimeProvider(), capacity: 4);
        var table = store.Retain(peer => peer == DhtTestPeers.Get(1));
        using var connections = store.Retain(peer => peer == DhtTestPeers.Get(2));
        for (var i = 1; i <= 4; i++) Identified(store, i);

        table.Dispose();
        table.Dispose();
        for (var i = 10; i < 20; i++) Identified(store, i);

        Assert.That(store.GetAddresses(DhtTestPeers.Get(1)), Is.Empty, "no longer in use: forgotten");
        Assert.That(store.GetAddresses(DhtTestPeers.Get(2)), Is.EqualTo(new[] { Address(2) }));
        Assert.That(store.Count, Is.EqualTo(4));
    }

    [Test]
    public void TheSameCheckRegisteredTwice_KeepsItsPeersUntilBothAreDisposed()
    {
        var store = new PeerStore(new FakeTimeProvider(), capacity: 2);
        Func<PeerId, bool> check = peer => peer == DhtTestPeers.Get(1);
        var first = store.Retain(check);
        using var second = store.Retain(check);
        Identified(store, 1);

        first.Dispose();
        for (var i = 10; i < 20; i++) Identified(store, i);

        Assert.That(store.GetAddresses(DhtTestPeers.Get(1)), Is.EqualTo(new[] { Address(1) }), "the second registration still keeps it");
    }

    [Test]
    public void ABudgetBelowOneByte_IsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new PeerStore(new FakeTimeProvider(), maxBytes: 0));
    }
}
