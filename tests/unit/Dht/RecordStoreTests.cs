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

    private const int Overhead = 192;

    [Test]
    public void Values_FillTheByteBudget_BeforeTheCount_AndWhatIsStoredStays()
    {
        var store = new RecordStore(new FakeTimeProvider(), TimeSpan.FromHours(1), maxRecords: 1000, maxValueSize: 1024, maxRecordsPerPeer: 1000, maxBytes: 4096);

        var stored = Enumerable.Range(0, 100).Count(i => store.Put(BitConverter.GetBytes(i), new byte[1000], DhtTestPeers.Get(i)));

        Assert.That(stored, Is.EqualTo(3), "three values of a kilobyte and their overhead fit in 4 KiB");
        Assert.That(store.Bytes, Is.LessThanOrEqualTo(4096));
        for (var i = 0; i < 3; i++) Assert.That(store.Get(BitConverter.GetBytes(i)), Is.Not.Null);
        Assert.That(store.Put([9], [9]), Is.True, "a small value still fits in what is left");
    }

    [Test]
    public void AnUpdateThatWouldOverflowTheBudget_IsRefused_AndTheOldValueStays()
    {
        var store = new RecordStore(new FakeTimeProvider(), TimeSpan.FromHours(1), 10, 1024, maxBytes: Overhead + 1 + 100);
        Assert.That(store.Put([1], new byte[100]), Is.True);

        Assert.That(store.Put([1], new byte[50]), Is.True, "an update that shrinks fits");
        Assert.That(store.Put([1], new byte[101]), Is.False, "one that grows past the budget does not");

        Assert.That(store.Get([1])!.Value, Has.Length.EqualTo(50));
        Assert.That(store.Bytes, Is.EqualTo(Overhead + 1 + 50));
    }

    [Test]
    public void ExpiredValues_MakeRoom_AndGiveTheirBytesBack()
    {
        var time = new FakeTimeProvider();
        var store = new RecordStore(time, TimeSpan.FromHours(1), 10, 1024, maxBytes: 2 * (Overhead + 1 + 500));
        Assert.That(store.Put([1], new byte[500]), Is.True);
        Assert.That(store.Put([2], new byte[500]), Is.True);
        Assert.That(store.Put([3], new byte[500]), Is.False);

        time.Advance(TimeSpan.FromHours(1));
        Assert.That(store.Put([3], new byte[500]), Is.True, "the expired two were swept to make room");
        Assert.That(store.Bytes, Is.EqualTo(Overhead + 1 + 500));

        time.Advance(TimeSpan.FromHours(1));
        Assert.That(store.Get([3]), Is.Null);
        Assert.That(store.Bytes, Is.Zero);
    }

    [Test]
    public void ABudgetBelowOneByte_IsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new RecordStore(new FakeTimeProvider(), TimeSpan.FromHours(1), 10, 8, maxBytes: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new RecordStore(new FakeTimeProvider(), TimeSpan.FromHours(1), 10, 8, maxBytesPerOrigin: 0));
    }

    private const string Flooder = "/ip4/198.51.100.7";
    private const string Honest = "/ip4/198.51.100.8";

    [Test]
    public void AFloodOfIdentitiesFromOneOrigin_StopsAtItsShare_WhileOtherOriginsAndOurOwnValuesAreStored()
    {
        const int each = Overhead + 4 + 100;
        var store = new RecordStore(new FakeTimeProvider(), TimeSpan.FromHours(1), 1000, 1024, maxRecordsPerPeer: 1000, maxBytes: each * 100, maxBytesPerOrigin: each * 3);

        var fromFlooder = Enumerable.Range(0, 30).Count(i => store.Put(BitConverter.GetBytes(i), new byte[100], DhtTestPeers.Get(i), Flooder));

        Assert.That(fromFlooder, Is.EqualTo(3), "every identity is new, so only the origin's share can stop them");
        Assert.That(store.BytesFrom(Flooder), Is.EqualTo(each * 3));
        Assert.That(store.Put(BitConverter.GetBytes(100), new byte[100], DhtTestPeers.Get(100), Honest), Is.True, "another origin is stored");
        Assert.That(store.Put(BitConverter.GetBytes(101), new byte[100]), Is.True, "our own values count against no share");
        Assert.That(store.Put(BitConverter.GetBytes(0), new byte[50], DhtTestPeers.Get(0), Flooder), Is.True, "an update that shrinks fits");
        Assert.That(store.Put(BitConverter.GetBytes(0), new byte[200], DhtTestPeers.Get(0), Flooder), Is.False, "one that grows past the share does not");
        Assert.That(store.Get(BitConverter.GetBytes(0))!.Value, Has.Length.EqualTo(50));
    }

    [Test]
    public void AValueOverwrittenFromAnotherOrigin_MovesTheCharge_AndEveryChargeIsGivenBack()
    {
        var time = new FakeTimeProvider();
        const int each = Overhead + 1 + 100;
        var store = new RecordStore(time, TimeSpan.FromHours(1), 10, 1024, maxBytesPerOrigin: each * 2);
        Assert.That(store.Put([1], new byte[100], DhtTestPeers.Get(1), Flooder), Is.True);
        Assert.That(store.Put([2], new byte[100], DhtTestPeers.Get(2), Flooder), Is.True);
        Assert.That(store.Put([3], new byte[100], DhtTestPeers.Get(3), Flooder), Is.False);

        Assert.That(store.Put([2], new byte[100], DhtTestPeers.Get(4), Honest), Is.True);
        Assert.That((store.BytesFrom(Flooder), store.BytesFrom(Honest)), Is.EqualTo((each, each)));
        Assert.That(store.Put([3], new byte[100], DhtTestPeers.Get(3), Flooder), Is.True, "the room the overwrite left is the flooder's again");

        time.Advance(TimeSpan.FromHours(1));
        Assert.That(store.Sweep(), Is.EqualTo(3));
        Assert.That(store.OriginCount, Is.Zero);
        Assert.That(store.Bytes, Is.Zero);
    }
}
