using P2PInference.Facilities.Dht;
using Microsoft.Extensions.Time.Testing;

namespace P2PInference.Tests.Unit.Dht;

[TestFixture]
public sealed class RecordStoreTests
{
    [Test]
    public void Put_RefusesOversizedValue()
    {
        var store = new RecordStore(new FakeTimeProvider(), TimeSpan.FromHours(1), 10, 8);
        Assert.That(store.Put("k"u8.ToArray(), new byte[9]), Is.False);
        Assert.That(store.Put("k"u8.ToArray(), new byte[8]), Is.True);
    }

    [Test]
    public void Put_RefusesNewKeys_WhenFull_ButUpdatesExisting()
    {
        var store = new RecordStore(new FakeTimeProvider(), TimeSpan.FromHours(1), 2, 8);
        Assert.That(store.Put([1], [1]), Is.True);
        Assert.That(store.Put([2], [2]), Is.True);
        Assert.That(store.Put([3], [3]), Is.False);
        Assert.That(store.Put([1], [9]), Is.True);
        Assert.That(store.Get([1])!.Value, Is.EqualTo(new byte[] { 9 }));
    }

    [Test]
    public void Get_ReturnsNull_AfterTtl()
    {
        var time = new FakeTimeProvider();
        var store = new RecordStore(time, TimeSpan.FromHours(1), 2, 8);
        store.Put([1], [1]);
        time.Advance(TimeSpan.FromHours(1));
        Assert.That(store.Get([1]), Is.Null);
        Assert.That(store.Count, Is.Zero);
    }

    [Test]
    public void OnePeerFloodingKeys_IsCutAtItsQuota_UntilItsRecordsExpireOrPassToAnotherPeer()
    {
        var time = new FakeTimeProvider();
        var store = new RecordStore(time, TimeSpan.FromHours(1), maxRecords: 1000, maxValueSize: 8, maxRecordsPerPeer: 5);
        var flooder = DhtTestPeers.Get(1);

        var stored = Enumerable.Range(0, 50).Count(i => store.Put([(byte)i], [1], flooder));

        Assert.That(stored, Is.EqualTo(5));
        Assert.That(store.Put([0], [2], flooder), Is.True, "updating a record of its own is not a new one");
        Assert.That(store.Put([100], [1], DhtTestPeers.Get(2)), Is.True, "another peer is stored");
        Assert.That(store.Put([101], [1]), Is.True, "our own puts count against no quota");
        Assert.That(store.Put([1], [3], DhtTestPeers.Get(2)), Is.True, "another peer overwrote one of the flooder's records");
        Assert.That(store.Put([102], [1], flooder), Is.True, "which gave the flooder one back");
        Assert.That(store.Put([103], [1], flooder), Is.False);

        time.Advance(TimeSpan.FromHours(1));
        Assert.That(store.Put([104], [1], flooder), Is.True, "expired records give the quota back");
    }

    [Test]
    public void RefusedPuts_DoNotScanTheStoreWhileNothingHasExpired()
    {
        var time = new FakeTimeProvider();
        var store = new RecordStore(time, TimeSpan.FromHours(1), maxRecords: 100, maxValueSize: 8, maxRecordsPerPeer: 1);
        for (var i = 0; i < 100; i++) store.Put([(byte)i], [1], DhtTestPeers.Get(i));

        Assert.That(Enumerable.Range(0, 1000).Count(i => store.Put([200, (byte)i, (byte)(i >> 8)], [1], DhtTestPeers.Get(300 + i % 50))), Is.Zero);
        Assert.That(store.Sweeps, Is.Zero);

        time.Advance(TimeSpan.FromHours(1));
        Assert.That(store.Put([201], [1], DhtTestPeers.Get(399)), Is.True, "the expired records were swept to make room");
        Assert.That(store.Sweeps, Is.EqualTo(1));
    }
}
