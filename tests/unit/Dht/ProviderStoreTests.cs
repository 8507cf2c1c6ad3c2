using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Addressing;
using Microsoft.Extensions.Time.Testing;

namespace P2PInference.Tests.Unit.Dht;

[TestFixture]
public sealed class ProviderStoreTests
{
    private static readonly byte[] Key = "key-1"u8.ToArray();
    private static readonly Multiaddress[] Addr = [Multiaddress.Parse("/ip4/10.0.0.1/tcp/4001")];

    [Test]
    public void Get_ReturnsProvider_UntilTtlPasses()
    {
        var time = new FakeTimeProvider();
        var store = new ProviderStore(time, TimeSpan.FromMinutes(10), 100, 10);
        store.Add(Key, DhtTestPeers.Get(1), Addr);

        time.Advance(TimeSpan.FromMinutes(10) - TimeSpan.FromTicks(1));
        Assert.That(store.Get(Key).Select(r => r.Provider), Is.EqualTo(new[] { DhtTestPeers.Get(1) }));
        Assert.That(store.Get(Key)[0].Addresses, Is.EqualTo(Addr));

        time.Advance(TimeSpan.FromTicks(1));
        Assert.That(store.Get(Key), Is.Empty);
        Assert.That(store.KeyCount, Is.Zero);
    }

    [Test]
    public void RecordAdded_RaisedForAStoredRecord_NotForARefusedOne()
    {
        var store = new ProviderStore(new FakeTimeProvider(), TimeSpan.FromMinutes(10), maxKeys: 100, maxProvidersPerKey: 1);
        var added = new List<(string Key, PeerId Provider)>();
        store.RecordAdded += (key, provider) => added.Add((System.Text.Encoding.UTF8.GetString(key), provider));

        Assert.That(store.Add(Key, DhtTestPeers.Get(1), Addr), Is.True);
        Assert.That(store.Add(Key, DhtTestPeers.Get(2), Addr), Is.False, "the key is full");

        Assert.That(added, Is.EqualTo(new[] { ("key-1", DhtTestPeers.Get(1)) }));
    }

    [Test]
    public void OneProviderFloodingKeys_IsCutAtItsCap_WhileRenewalsAndOtherProvidersAreStored()
    {
        var time = new FakeTimeProvider();
        var store = new ProviderStore(time, TimeSpan.FromMinutes(10), maxKeys: 1000, maxProvidersPerKey: 10, maxKeysPerProvider: 5);
        var flooder = DhtTestPeers.Get(1);

        var stored = Enumerable.Range(0, 50).Count(i => store.Add(System.Text.Encoding.UTF8.GetBytes($"spam-{i}"), flooder, Addr));

        Assert.That(stored, Is.EqualTo(5));
        Assert.That(store.Add("spam-0"u8, flooder, Addr), Is.True, "renewing a key it holds is not a new key");
        Assert.That(store.Add(Key, DhtTestPeers.Get(2), Addr), Is.True, "an honest provider is still stored");
        Assert.That(store.Get(Key).Select(r => r.Provider), Is.EqualTo(new[] { DhtTestPeers.Get(2) }));

        time.Advance(TimeSpan.FromMinutes(10));
        Assert.That(store.Add("spam-new"u8, flooder, Addr), Is.True, "expired records give the provider its quota back");
    }

    [Test]
    public void RefusedAdds_ScanTheStoreForExpiredRecords_AtMostOncePerSecond_AndOnlyWhenOneMayHaveExpired()
    {
        // A provider at its quota floods new keys into a store of 500 other records: each refusal used to
        // scan all of them, under the store's lock.
        var time = new FakeTimeProvider();
        var store = new ProviderStore(time, TimeSpan.FromMinutes(10), maxKeys: 1000, maxProvidersPerKey: 10, maxKeysPerProvider: 5);
        for (var i = 0; i < 500; i++) store.Add(System.Text.Encoding.UTF8.GetBytes($"other-{i}"), DhtTestPeers.Get(2 + i % 100), Addr);
        var flooder = DhtTestPeers.Get(1);
        for (var i = 0; i < 5; i++) store.Add(System.Text.Encoding.UTF8.GetBytes($"own-{i}"), flooder, Addr, TimeSpan.FromHours(1));
        bool FloodOnce(int round) => Enumerable.Range(0, 1000).Any(i => store.Add(System.Text.Encoding.UTF8.GetBytes($"spam-{round}-{i}"), flooder, Addr));

        Assert.That(FloodOnce(0), Is.False, "the flooder is at its quota");
        Assert.That(store.Sweeps, Is.Zero, "nothing had expired: no scan");

        time.Advance(TimeSpan.FromMinutes(11));
        Assert.That(FloodOnce(1), Is.False, "its own records live on");
        Assert.That(store.Sweeps, Is.EqualTo(1), "the others' records expired: one scan, not one per refusal");
        Assert.That(store.KeyCount, Is.EqualTo(5), "that scan dropped them");

        time.Advance(TimeSpan.FromSeconds(1));
        Assert.That(FloodOnce(2), Is.False);
        Assert.That(store.Sweeps, Is.EqualTo(1), "nothing left that could have expired");
    }

    [Test]
    public void AFullStore_AdmitsANewKey_OnceARecordExpired_WithoutScanningWhileNoneHas()
    {
        var time = new FakeTimeProvider();
        var store = new ProviderStore(time, TimeSpan.FromMinutes(10), maxKeys: 100, maxProvidersPerKey: 10);
        for (var i = 0; i < 100; i++) store.Add([(byte)i], DhtTestPeers.Get(1 + i % 50), Addr, TimeSpan.FromMinutes(10 + i));

        Assert.That(Enumerable.Range(0, 1000).Count(i => store.Add([200, (byte)i, (byte)(i >> 8)], DhtTestPeers.Get(99), Addr)), Is.Zero);
        Assert.That(store.Sweeps, Is.Zero, "a full store of live records is not scanned");

        time.Advance(TimeSpan.FromMinutes(10));
        Assert.That(store.Add([201], DhtTestPeers.Get(99), Addr), Is.True, "the first record expired and its place is taken");
        Assert.That(store.Add([202], DhtTestPeers.Get(99), Addr), Is.False, "full again");
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.That(store.Add([202], DhtTestPeers.Get(99), Addr), Is.True, "the second expired");
        Assert.That(store.Sweeps, Is.EqualTo(2));
    }

    [Test]
    public void Add_AgainExtendsExpiry()
    {
        var time = new FakeTimeProvider();
        var store = new ProviderStore(time, TimeSpan.FromMinutes(10), 100, 10);
        store.Add(Key, DhtTestPeers.Get(1), Addr);
        time.Advance(TimeSpan.FromMinutes(6));
        store.Add(Key, DhtTestPeers.Get(1), Addr);
        time.Advance(TimeSpan.FromMinutes(6));

        Assert.That(store.Get(Key), Has.Count.EqualTo(1));
    }

    [Test]
    public void Add_RefusesNewProviders_PastPerKeyCap_ButRefreshesExisting()
    {
        var store = new ProviderStore(new FakeTimeProvider(), TimeSpan.FromMinutes(10), 100, 5);
        var accepted = DhtTestPeers.Take(50).Count(p => store.Add(Key, p, Addr));

        Assert.That(accepted, Is.EqualTo(5));
        Assert.That(store.Get(Key), Has.Count.EqualTo(5));
        Assert.That(store.Add(Key, DhtTestPeers.Get(0), Addr), Is.True, "a stored provider may refresh");
    }

    [Test]
    public void Add_AdmitsNewProvider_OnceAnOldOneExpired()
    {
        var time = new FakeTimeProvider();
        var store = new ProviderStore(time, TimeSpan.FromMinutes(10), 100, 1);
        store.Add(Key, DhtTestPeers.Get(1), Addr);
        Assert.That(store.Add(Key, DhtTestPeers.Get(2), Addr), Is.False);

        time.Advance(TimeSpan.FromMinutes(10));

        Assert.That(store.Add(Key, DhtTestPeers.Get(2), Addr), Is.True);
    }

    [Test]
    public void Add_RefusesNewKeys_PastKeyCap()
    {
        var store = new ProviderStore(new FakeTimeProvider(), TimeSpan.FromMinutes(10), 3, 10);
        var accepted = Enumerable.Range(0, 10).Count(i => store.Add([(byte)i], DhtTestPeers.Get(1), Addr));

        Assert.That(accepted, Is.EqualTo(3));
        Assert.That(store.KeyCount, Is.EqualTo(3));
    }

    [Test]
    public void Sweep_DropsExpiredRecordsAcrossKeys()
    {
        var time = new FakeTimeProvider();
        var store = new ProviderStore(time, TimeSpan.FromMinutes(10), 100, 10);
        for (var i = 0; i < 5; i++) store.Add([(byte)i], DhtTestPeers.Get(1), Addr);
        store.Add([9], DhtTestPeers.Get(2), Addr, TimeSpan.FromHours(1));
        time.Advance(TimeSpan.FromMinutes(11));

        Assert.That(store.Sweep(), Is.EqualTo(5));
        Assert.That(store.KeyCount, Is.EqualTo(1));
    }

    [Test]
    public void Remove_DropsOnlyThatProvider()
    {
        var store = new ProviderStore(new FakeTimeProvider(), TimeSpan.FromMinutes(10), 100, 10);
        store.Add(Key, DhtTestPeers.Get(1), Addr);
        store.Add(Key, DhtTestPeers.Get(2), Addr);

        Assert.That(store.Remove(Key, DhtTestPeers.Get(1)), Is.True);
        Assert.That(store.Get(Key).Select(r => r.Provider), Is.EqualTo(new[] { DhtTestPeers.Get(2) }));
    }
}
