using Microsoft.Extensions.Time.Testing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Identity;

namespace P2PInference.Tests.Unit.Dht;

/// <summary>Which newly learned peers get a copy of a record we provide, and when.</summary>
[TestFixture]
public sealed class OwnProviderRecordsTests
{
    private static readonly byte[] Key = "p2pinference/auth"u8.ToArray();
    private static readonly KadId Target = KadId.FromKey(Key);

    /// <summary>A table of our own, holding <paramref name="peers"/> of the pool, and those peers ordered closest to the key first.</summary>
    private static (RoutingTable Table, PeerId[] ByDistance) Table(int peers)
    {
        var table = new RoutingTable(DhtTestPeers.Get(0), 20, new FakeTimeProvider());
        var added = DhtTestPeers.Take(peers + 1)[1..];
        foreach (var peer in added) table.TryAdd(peer);
        return (table, added.OrderBy(p => KadId.FromPeer(p), Comparer<KadId>.Create(Target.CompareDistance)).ToArray());
    }

    [Test]
    public void APeerAmongTheKClosest_GetsTheRecordOnce()
    {
        var (table, byDistance) = Table(30);
        var records = new OwnProviderRecords();
        records.Add(Key, "p2pinference/auth");

        var first = records.ClaimKeysFor(byDistance[0], table, k: 20);
        var again = records.ClaimKeysFor(byDistance[0], table, k: 20);

        Assert.That(first, Has.Count.EqualTo(1));
        Assert.That(first[0], Is.EqualTo(Key));
        Assert.That(again, Is.Empty, "already holds it");
    }

    [Test]
    public void APeerFartherThanTheKClosest_GetsNothing()
    {
        var (table, byDistance) = Table(30);
        var records = new OwnProviderRecords();
        records.Add(Key, "p2pinference/auth");

        Assert.That(records.ClaimKeysFor(byDistance[^1], table, k: 20), Is.Empty);
    }

    [Test]
    public void WhileAnAnnouncementRuns_NothingIsReplicated_AndItsHoldersAreNotSentItAgain()
    {
        var (table, byDistance) = Table(30);
        var records = new OwnProviderRecords();
        records.Add(Key, "p2pinference/auth");

        records.BeginAnnouncement(Key);
        var during = records.ClaimKeysFor(byDistance[0], table, k: 20);
        records.EndAnnouncement(Key, byDistance[..2]);

        Assert.Multiple(() =>
        {
            Assert.That(during, Is.Empty, "the announcement's own lookup reaches the closest peers");
            Assert.That(records.ClaimKeysFor(byDistance[0], table, k: 20), Is.Empty, "the announcement sent it");
            Assert.That(records.ClaimKeysFor(byDistance[2], table, k: 20), Has.Count.EqualTo(1));
        });
    }

    [Test]
    public void AnUnannouncedKey_IsNotReplicated()
    {
        var (table, byDistance) = Table(5);
        var records = new OwnProviderRecords();
        records.Add(Key, "p2pinference/auth");

        Assert.That(records.Remove(Key), Is.True);

        Assert.Multiple(() =>
        {
            Assert.That(records.ClaimKeysFor(byDistance[0], table, k: 20), Is.Empty);
            Assert.That(records.Count, Is.Zero);
            Assert.That(records.Topics, Is.Empty);
        });
    }
}
