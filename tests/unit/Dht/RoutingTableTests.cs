using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Identity;
using Microsoft.Extensions.Time.Testing;

namespace P2PInference.Tests.Unit.Dht;

[TestFixture]
public sealed class RoutingTableTests
{
    private static readonly PeerId Self = DhtTestPeers.Get(0);

    private static RoutingTable NewTable(int k = 20, int maxFailures = 1) => new(Self, k, new FakeTimeProvider(), maxFailures);

    [Test]
    public void TryAdd_RefusesSelf()
    {
        var table = NewTable();
        Assert.That(table.TryAdd(Self), Is.EqualTo(RoutingTableUpdate.Self));
        Assert.That(table.Count, Is.Zero);
    }

    [Test]
    public void TryAdd_PutsPeerInBucketOfItsCommonPrefixLength()
    {
        var table = NewTable();
        foreach (var peer in DhtTestPeers.Take(100).Skip(1)) table.TryAdd(peer);

        var expected = DhtTestPeers.Take(100).Skip(1)
            .GroupBy(p => table.BucketIndexOf(KadId.FromPeer(p)))
            .ToDictionary(g => g.Key, g => Math.Min(g.Count(), 20));
        Assert.That(table.BucketSizes, Is.EquivalentTo(expected));
        // Half the key space is bucket 0: with random ids it is the fullest.
        Assert.That(table.BucketSizes[0], Is.EqualTo(table.BucketSizes.Values.Max()));
    }

    [Test]
    public void TryAdd_QueuesPeer_WhenBucketFull()
    {
        var table = NewTable(k: 2);
        var bucket0 = DhtTestPeers.Take(200).Skip(1).Where(p => table.BucketIndexOf(KadId.FromPeer(p)) == 0).Take(3).ToArray();

        Assert.That(table.TryAdd(bucket0[0]), Is.EqualTo(RoutingTableUpdate.Added));
        Assert.That(table.TryAdd(bucket0[1]), Is.EqualTo(RoutingTableUpdate.Added));
        Assert.That(table.TryAdd(bucket0[2]), Is.EqualTo(RoutingTableUpdate.Queued));
        Assert.That(table.TryAdd(bucket0[0]), Is.EqualTo(RoutingTableUpdate.Refreshed));
        Assert.That(table.Contains(bucket0[2]), Is.False);
        Assert.That(table.Count, Is.EqualTo(2));
    }

    [Test]
    public void MarkFailed_EvictsStalePeer_AndPromotesReplacement()
    {
        var table = NewTable(k: 2);
        var bucket0 = DhtTestPeers.Take(200).Skip(1).Where(p => table.BucketIndexOf(KadId.FromPeer(p)) == 0).Take(3).ToArray();
        foreach (var p in bucket0) table.TryAdd(p);
        var removed = new List<PeerId>();
        table.PeerRemoved += removed.Add;

        Assert.That(table.MarkFailed(bucket0[0]), Is.True);

        Assert.That(removed, Is.EqualTo(new[] { bucket0[0] }));
        Assert.That(table.Peers, Is.EquivalentTo(new[] { bucket0[1], bucket0[2] }));
    }

    [Test]
    public void MarkFailed_KeepsPeer_UntilFailureLimit()
    {
        var table = NewTable(maxFailures: 3);
        var peer = DhtTestPeers.Get(5);
        table.TryAdd(peer);

        table.MarkFailed(peer);
        table.MarkFailed(peer);
        Assert.That(table.Contains(peer), Is.True);
        table.TryAdd(peer); // an answer forgives earlier failures
        table.MarkFailed(peer);
        table.MarkFailed(peer);
        Assert.That(table.Contains(peer), Is.True);
        Assert.That(table.MarkFailed(peer), Is.True);
        Assert.That(table.Contains(peer), Is.False);
    }

    [Test]
    public void NearestPeers_ReturnsClosestByXor_InOrder()
    {
        var table = NewTable(k: 200);
        var peers = DhtTestPeers.Take(150).Skip(1).ToArray();
        foreach (var p in peers) table.TryAdd(p);
        var target = KadId.FromKey("some content key"u8);

        var nearest = table.NearestPeers(target, 10);

        var expected = peers.OrderBy(p => KadId.FromPeer(p), Comparer<KadId>.Create(target.CompareDistance)).Take(10);
        Assert.That(nearest, Is.EqualTo(expected));
    }

    [Test]
    public void NearestPeers_IsTheHeadOfTheWholeTableSortedByDistance_ForAnyCountAndExclusion()
    {
        var table = NewTable(k: 200);
        var peers = DhtTestPeers.Take(150).Skip(1).ToArray();
        foreach (var p in peers) table.TryAdd(p);
        var random = new Random(7);
        for (var i = 0; i < 200; i++)
        {
            var target = KadId.Random(random);
            var count = random.Next(1, 160);
            var exclude = i % 2 == 0 ? peers[random.Next(peers.Length)] : null;

            var nearest = table.NearestPeers(target, count, exclude);

            var expected = peers.Where(p => p != exclude).OrderBy(p => KadId.FromPeer(p), Comparer<KadId>.Create(target.CompareDistance)).Take(count);
            Assert.That(nearest, Is.EqualTo(expected), $"count {count}");
        }
    }

    [Test]
    public void NearestPeers_IsTheHeadOfTheWholeTableSortedByDistance_ForTargetsInEveryBucket()
    {
        // Small buckets spread the table over many of them; targets near our own id fall in the deep ones.
        var table = NewTable(k: 4);
        foreach (var p in DhtTestPeers.Take(400).Skip(1)) table.TryAdd(p);
        var inTable = table.Peers;
        var random = new Random(11);
        var targets = new List<KadId> { table.LocalId };
        targets.AddRange(inTable.Take(10).Select(KadId.FromPeer));
        for (var prefix = 0; prefix < 14; prefix++)
            for (var i = 0; i < 8; i++) targets.Add(table.LocalId.RandomWithCommonPrefix(prefix, random));

        foreach (var target in targets)
        {
            var count = random.Next(1, inTable.Count + 5);
            var exclude = random.Next(3) == 0 ? inTable[random.Next(inTable.Count)] : null;

            var nearest = table.NearestPeers(target, count, exclude);

            var expected = inTable.Where(p => p != exclude).OrderBy(p => KadId.FromPeer(p), Comparer<KadId>.Create(target.CompareDistance)).Take(count);
            Assert.That(nearest, Is.EqualTo(expected), $"target in bucket {table.BucketIndexOf(target)}, count {count}");
        }
        Assert.That(table.BucketSizes.Count, Is.GreaterThan(6), "the table spans many buckets");
    }

    [Test]
    public void NearestPeers_IntoADestination_ListsWhatTheListDoes_WhateverTheDestinationHeldBefore()
    {
        // The span overload fills a caller's (pooled, reused) array: what was in it before must not show.
        var table = NewTable(k: 8);
        foreach (var p in DhtTestPeers.Take(60).Skip(1)) table.TryAdd(p);
        var inTable = table.Peers;
        var random = new Random(5);
        var destination = new PeerId[inTable.Count + 10];
        for (var i = 0; i < 100; i++)
        {
            var target = KadId.Random(random);
            var count = random.Next(0, destination.Length + 1);
            var exclude = i % 3 == 0 ? inTable[random.Next(inTable.Count)] : null;
            Array.Fill(destination, DhtTestPeers.Get(100 + i));

            var found = table.NearestPeers(target, exclude, destination.AsSpan(0, count));

            Assert.That(destination[..found], Is.EqualTo(table.NearestPeers(target, count, exclude)), $"count {count}");
            Assert.That(found, Is.EqualTo(Math.Min(count, inTable.Count - (exclude is null ? 0 : 1))));
        }
        Assert.That(NewTable().NearestPeers(KadId.Random(random), null, destination), Is.Zero, "an empty table");
    }

    [Test]
    public void Count_IsCapped_ByBucketSizeTimesBuckets()
    {
        var table = NewTable(k: 3);
        foreach (var p in DhtTestPeers.Take(300).Skip(1)) table.TryAdd(p);

        Assert.That(table.BucketSizes.Values, Has.All.LessThanOrEqualTo(3));
        Assert.That(table.Count, Is.LessThan(30));
    }
}
