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

    private static Multiaddress[] Addresses(int count) =>
        Enumerable.Range(0, count).Select(i => Multiaddress.Parse($"/dns4/node-{i}.providers.example/tcp/4001")).ToArray();

    private static byte[] KeyOf(int i) => System.Text.Encoding.UTF8.GetBytes($"key-{i}");

    /// <summary>What one key with one record of <paramref name="addresses"/> addresses costs a store.</summary>
    private static long CostOfOne(int addresses)
    {
        var probe = new ProviderStore(new FakeTimeProvider(), TimeSpan.FromMinutes(10), 10, 10);
        probe.Add(KeyOf(0), DhtTestPeers.Get(0), Addresses(addresses));
        return probe.Bytes;
    }

    [Test]
    public void AFloodOfIdentities_StopsAtTheByteBudget_LongBeforeTheCounts_AndWhatIsStoredStays()
    {
        var budget = CostOfOne(8) * 10;
        var store = new ProviderStore(new FakeTimeProvider(), TimeSpan.FromMinutes(10), maxKeys: 1000, maxProvidersPerKey: 64, maxKeysPerProvider: 1000, maxBytes: budget);

        var stored = Enumerable.Range(0, 30).Count(i => store.Add(KeyOf(i), DhtTestPeers.Get(i), Addresses(8)));

        Assert.That(stored, Is.EqualTo(10), "every identity is new, so only the bytes can stop them");
        Assert.That(store.Bytes, Is.LessThanOrEqualTo(budget));
        Assert.That(store.KeyCount, Is.EqualTo(10));
        for (var i = 0; i < 10; i++) Assert.That(store.Get(KeyOf(i)).Single().Provider, Is.EqualTo(DhtTestPeers.Get(i)));
        Assert.That(store.Get(KeyOf(10)), Is.Empty);
    }

    [Test]
    public void TheBudget_CountsAddresses_SoRecordsWithManyFitFewer()
    {
        var budget = CostOfOne(8) * 10;
        var many = new ProviderStore(new FakeTimeProvider(), TimeSpan.FromMinutes(10), 1000, 64, 1000, maxBytes: budget);
        var few = new ProviderStore(new FakeTimeProvider(), TimeSpan.FromMinutes(10), 1000, 64, 1000, maxBytes: budget);

        var withMany = Enumerable.Range(0, 100).Count(i => many.Add("one-key"u8, DhtTestPeers.Get(i), Addresses(8)));
        var withOne = Enumerable.Range(0, 100).Count(i => few.Add("one-key"u8, DhtTestPeers.Get(i), Addresses(1)));

        Assert.That(withMany, Is.LessThan(withOne / 2), $"{withMany} records of 8 addresses, {withOne} of one");
    }

    [Test]
    public void ARenewalThatWouldOverflowTheBudget_IsRefused_AndTheRecordItHadStays()
    {
        var time = new FakeTimeProvider();
        var store = new ProviderStore(time, TimeSpan.FromMinutes(10), 100, 10, maxBytes: CostOfOne(2));
        var provider = DhtTestPeers.Get(1);
        Assert.That(store.Add(Key, provider, Addresses(2)), Is.True);

        time.Advance(TimeSpan.FromMinutes(5));
        Assert.That(store.Add(Key, provider, Addresses(1)), Is.True, "a renewal that shrinks fits");
        Assert.That(store.Add(Key, provider, Addresses(3)), Is.False, "one that grows past the budget does not");

        Assert.That(store.Get(Key).Single().Addresses, Is.EqualTo(Addresses(1)));
        time.Advance(TimeSpan.FromMinutes(10) - TimeSpan.FromTicks(1));
        Assert.That(store.Get(Key), Has.Count.EqualTo(1), "the refused renewal did not cut the stored record's life");
    }

    [Test]
    public void ExpiredRecords_MakeRoomInAFullBudget()
    {
        var time = new FakeTimeProvider();
        var store = new ProviderStore(time, TimeSpan.FromMinutes(10), 1000, 64, 1000, maxBytes: CostOfOne(2) * 3);
        for (var i = 0; i < 3; i++) Assert.That(store.Add(KeyOf(i), DhtTestPeers.Get(i), Addresses(2)), Is.True);
        Assert.That(store.Add(KeyOf(3), DhtTestPeers.Get(3), Addresses(2)), Is.False);

        time.Advance(TimeSpan.FromMinutes(10));

        Assert.That(store.Add(KeyOf(3), DhtTestPeers.Get(3), Addresses(2)), Is.True);
        Assert.That(store.KeyCount, Is.EqualTo(1));
        Assert.That(store.Bytes, Is.EqualTo(CostOfOne(2)));
    }

    [Test]
    public void Bytes_ReturnToZero_HoweverTheRecordsLeave()
    {
        var time = new FakeTimeProvider();
        var store = new ProviderStore(time, TimeSpan.FromMinutes(10), 100, 2);
        store.Add(KeyOf(0), DhtTestPeers.Get(0), Addresses(1));
        store.Add(KeyOf(0), DhtTestPeers.Get(1), Addresses(3));
        store.Add(KeyOf(1), DhtTestPeers.Get(0), Addresses(2));
        store.Add(KeyOf(2), DhtTestPeers.Get(2), Addresses(0));
        store.Add(KeyOf(2), DhtTestPeers.Get(2), Addresses(4));
        Assert.That(store.Bytes, Is.GreaterThan(0));

        Assert.That(store.Remove(KeyOf(0), DhtTestPeers.Get(1)), Is.True);
        time.Advance(TimeSpan.FromMinutes(5));
        store.Add(KeyOf(3), DhtTestPeers.Get(3), Addresses(1));
        time.Advance(TimeSpan.FromMinutes(5));
        Assert.That(store.Get(KeyOf(0)), Is.Empty, "expired: dropped as a read meets it");
        Assert.That(store.Add(KeyOf(3), DhtTestPeers.Get(4), Addresses(1)), Is.True);
        Assert.That(store.Add(KeyOf(3), DhtTestPeers.Get(5), Addresses(1)), Is.False, "the key is full");
        Assert.That(store.Sweep(), Is.EqualTo(2));
        Assert.That(store.Remove(KeyOf(3), DhtTestPeers.Get(3)), Is.True);
        Assert.That(store.Remove(KeyOf(3), DhtTestPeers.Get(4)), Is.True);

        Assert.That(store.KeyCount, Is.Zero);
        Assert.That(store.Bytes, Is.Zero);
    }

    [Test]
    public void Bytes_ReturnToZero_EvenWhenTheCallerChangesItsAddressListAfterwards()
    {
        var store = new ProviderStore(new FakeTimeProvider(), TimeSpan.FromMinutes(10), 100, 10);
        var addresses = new List<Multiaddress>(Addresses(1));
        store.Add(Key, DhtTestPeers.Get(1), addresses);
        addresses.AddRange(Addresses(8));

        Assert.That(store.Remove(Key, DhtTestPeers.Get(1)), Is.True);

        Assert.That(store.Bytes, Is.Zero);
    }

    [Test]
    public void ABudgetBelowOneByte_IsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new ProviderStore(new FakeTimeProvider(), TimeSpan.FromMinutes(10), 100, 10, maxBytes: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new ProviderStore(new FakeTimeProvider(), TimeSpan.FromMinutes(10), 100, 10, maxBytesPerOrigin: 0));
    }

    private const string Flooder = "/ip4/198.51.100.7";
    private const string Honest = "/ip4/198.51.100.8";

    [Test]
    public void AFloodOfIdentitiesFromOneOrigin_StopsAtItsShare_WhileOtherOriginsAndOurOwnRecordsAreStored()
    {
        var share = CostOfOne(2) * 5;
        var store = new ProviderStore(new FakeTimeProvider(), TimeSpan.FromMinutes(10), 1000, 64, 1000, maxBytes: share * 10, maxBytesPerOrigin: share);

        var fromFlooder = Enumerable.Range(0, 30).Count(i => store.Add(KeyOf(i), DhtTestPeers.Get(i), Addresses(2), origin: Flooder));

        Assert.That(fromFlooder, Is.EqualTo(5), "every identity is new, so only the origin's share can stop them");
        Assert.That(store.BytesFrom(Flooder), Is.EqualTo(share));
        Assert.That(store.Add(KeyOf(8), DhtTestPeers.Get(100), Addresses(2), origin: Honest), Is.True, "another origin is stored");
        Assert.That(store.Add(KeyOf(9), DhtTestPeers.Get(101), Addresses(2)), Is.True, "our own records count against no share");
        Assert.That(store.BytesFrom(Honest), Is.EqualTo(CostOfOne(2)));
        Assert.That(store.OriginCount, Is.EqualTo(2));
    }

    [Test]
    public void AnOriginIsChargedForEachNewKey_SoAFloodOfKeysFitsNoMoreThanAFloodOfRecords()
    {
        var store = new ProviderStore(new FakeTimeProvider(), TimeSpan.FromMinutes(10), 1000, 64, 1000, maxBytesPerOrigin: CostOfOne(1) * 4);
        // Records under one key share it, and the origin pays for the key with each: four fit either way.
        var underOneKey = Enumerable.Range(0, 10).Count(i => store.Add(KeyOf(0), DhtTestPeers.Get(i), Addresses(1), origin: Flooder));
        var underNewKeys = Enumerable.Range(0, 10).Count(i => store.Add(KeyOf(1 + i), DhtTestPeers.Get(20 + i), Addresses(1), origin: Honest));

        Assert.That((underOneKey, underNewKeys), Is.EqualTo((4, 4)));
    }

    [Test]
    public void ARenewalFromTheSameOrigin_IsNotChargedTwice_AndOneFromAnotherMovesTheCharge()
    {
        var time = new FakeTimeProvider();
        var share = CostOfOne(2) * 2;
        var store = new ProviderStore(time, TimeSpan.FromMinutes(10), 100, 10, maxBytesPerOrigin: share);
        Assert.That(store.Add(KeyOf(0), DhtTestPeers.Get(0), Addresses(2), origin: Flooder), Is.True);
        Assert.That(store.Add(KeyOf(1), DhtTestPeers.Get(1), Addresses(2), origin: Flooder), Is.True);
        Assert.That(store.Add(KeyOf(2), DhtTestPeers.Get(2), Addresses(2), origin: Flooder), Is.False, "the share is full");

        time.Advance(TimeSpan.FromMinutes(5));
        Assert.That(store.Add(KeyOf(0), DhtTestPeers.Get(0), Addresses(2), origin: Flooder), Is.True, "a renewal replaces its own charge");
        Assert.That(store.Add(KeyOf(0), DhtTestPeers.Get(0), Addresses(3), origin: Flooder), Is.False, "a renewal that grows past the share does not fit");
        Assert.That(store.BytesFrom(Flooder), Is.EqualTo(share));

        // The provider moved: its record now counts against the address it announced from.
        Assert.That(store.Add(KeyOf(0), DhtTestPeers.Get(0), Addresses(2), origin: Honest), Is.True);
        Assert.That(store.BytesFrom(Flooder), Is.EqualTo(share / 2));
        Assert.That(store.BytesFrom(Honest), Is.EqualTo(share / 2));
        Assert.That(store.Add(KeyOf(2), DhtTestPeers.Get(2), Addresses(2), origin: Flooder), Is.True, "the room it left is the flooder's again");
    }

    [Test]
    public void AnOriginsExpiredRecords_MakeRoomInItsShare_AndEveryChargeIsGivenBack()
    {
        var time = new FakeTimeProvider();
        var store = new ProviderStore(time, TimeSpan.FromMinutes(10), 100, 10, maxBytesPerOrigin: CostOfOne(2) * 2);
        store.Add(KeyOf(0), DhtTestPeers.Get(0), Addresses(2), origin: Flooder);
        store.Add(KeyOf(1), DhtTestPeers.Get(1), Addresses(2), origin: Flooder);
        store.Add(KeyOf(2), DhtTestPeers.Get(2), Addresses(1), origin: Honest);
        Assert.That(store.Add(KeyOf(3), DhtTestPeers.Get(3), Addresses(2), origin: Flooder), Is.False);

        time.Advance(TimeSpan.FromMinutes(10));
        Assert.That(store.Add(KeyOf(3), DhtTestPeers.Get(3), Addresses(2), origin: Flooder), Is.True, "the expired two were swept to make room");
        Assert.That(store.BytesFrom(Flooder), Is.EqualTo(CostOfOne(2)));
        Assert.That(store.BytesFrom(Honest), Is.Zero);

        Assert.That(store.Remove(KeyOf(3), DhtTestPeers.Get(3)), Is.True);
        Assert.That(store.OriginCount, Is.Zero);
        Assert.That(store.Bytes, Is.Zero);
    }
}
