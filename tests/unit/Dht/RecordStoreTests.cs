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
}
