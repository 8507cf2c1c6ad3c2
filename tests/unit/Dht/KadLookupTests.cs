using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Dht.Proto;
using P2PInference.Facilities.Identity;
using P2PInference.TestKit;
using P2PInference.TestKit.Simulation;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.Tests.Unit.Dht;

/// <summary>The iterative lookup against a simulated network of routing tables (no sockets; fake time, or the simulation executor where time must pass).</summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class KadLookupTests
{
    private const int Peers = 200;
    private static readonly Lazy<Dictionary<PeerId, RoutingTable>> Network = new(BuildNetwork);

    private static Dictionary<PeerId, RoutingTable> BuildNetwork()
    {
        var time = new FakeTimeProvider();
        var peers = DhtTestPeers.Take(Peers);
        var tables = new Dictionary<PeerId, RoutingTable>();
        foreach (var p in peers)
        {
            var table = new RoutingTable(p, 20, time);
            foreach (var other in peers) table.TryAdd(other);
            tables[p] = table;
        }
        return tables;
    }

    private static Message Answer(PeerId peer, KadId target)
    {
        var reply = new Message { Type = Message.Types.MessageType.FindNode };
        foreach (var p in Network.Value[peer].NearestPeers(target, 20))
            reply.CloserPeers.Add(new Message.Types.Peer { Id = ByteString.CopyFrom(p.Bytes) });
        return reply;
    }

    /// <summary><paramref name="reply"/> as the lookup gets it off the wire.</summary>
    private static KadReply Received(Message reply) => KadReply.Parse(reply.ToByteArray(), 1024, AddressScope.Loopback);

    private static IEnumerable<PeerId> ByDistance(KadId target, PeerId self) =>
        DhtTestPeers.Take(Peers).Where(p => p != self).OrderBy(p => KadId.FromPeer(p), Comparer<KadId>.Create(target.CompareDistance));

    private static IReadOnlyList<PeerId> TrueClosest(KadId target, PeerId self) => ByDistance(target, self).Take(20).ToArray();

    private static KadLookup NewLookup(KadId target, PeerId self, KademliaDhtOptions options,
        Func<PeerId, CancellationToken, Task<Message>> request, Func<PeerId, KadReply, int, bool>? onResponse = null,
        List<(PeerId, bool)>? outcomes = null) =>
        new(target, self, options, async (p, ct) => Received(await request(p, ct)), onResponse ?? ((_, _, _) => false), (p, ok) => outcomes?.Add((p, ok)), (_, _) => { });

    private static IEnumerable<PeerId> Seeds(PeerId self, KadId target) => Network.Value[self].NearestPeers(target, 20);

    [Test]
    public void Lookup_ConvergesOnTheKClosestItLearnedOf_AndFindsTheTrueClosest() => SimulationTest.Run(async sim =>
    {
        // On the executor: which parallel request answers first is the seed's, so a run replays exactly.
        // Tables hold 20 peers a bucket, so a far bucket misses most of the 200: Kademlia then finds the
        // true 20 closest only with high probability (seed 10 misses the 20th). What it always does is
        // converge on the k closest of everything its seeds and the answers it used named.
        var random = sim.CreateRandom("lookups");
        var options = new KademliaDhtOptions { TimeProvider = sim.Clock };
        for (var i = 0; i < 10; i++)
        {
            var self = DhtTestPeers.Get(random.Next(Peers));
            var target = KadId.Random(random);
            var learned = Seeds(self, target).ToHashSet();
            var lookup = NewLookup(target, self, options, (p, _) => Task.FromResult(Answer(p, target)), onResponse: (_, reply, _) =>
            {
                for (var j = 0; j < reply.CloserPeerCount; j++) learned.Add(PeerId.FromBytes(reply.CloserPeer(j).Id));
                return false;
            });

            var result = await lookup.RunAsync(Seeds(self, target), CancellationToken.None);

            learned.Remove(self);
            var closestLearned = learned.OrderBy(p => KadId.FromPeer(p), Comparer<KadId>.Create(target.CompareDistance)).Take(20);
            Assert.That(result.ClosestPeers, Is.EqualTo(closestLearned));
            Assert.That(result.ClosestPeers, Does.Contain(TrueClosest(target, self)[0]), "the peer closest to the target is found");
            Assert.That(result.Stats.Failures, Is.Zero);
            Assert.That(result.Stats.Hops, Is.GreaterThanOrEqualTo(1));
            // Requests still in flight at convergence are abandoned, not counted as answers.
            Assert.That(result.Stats.Responses, Is.LessThanOrEqualTo(result.Stats.RequestsSent));
            Assert.That(result.Stats.TimedOut, Is.False);
        }
    });

    [Test]
    public async Task Lookup_SkipsFailingPeers_AndReportsThem(CancellationToken ct)
    {
        var random = TestSeed.CreateRandom();
        var dead = DhtTestPeers.Take(Peers).Where((_, i) => i % 3 == 1).ToHashSet();
        var self = DhtTestPeers.Get(0);
        var target = KadId.Random(random);
        var outcomes = new List<(PeerId, bool)>();
        var lookup = NewLookup(target, self, new KademliaDhtOptions { TimeProvider = new FakeTimeProvider() },
            (p, _) => dead.Contains(p) ? Task.FromException<Message>(new IOException("refused")) : Task.FromResult(Answer(p, target)),
            outcomes: outcomes);

        var result = await lookup.RunAsync(Seeds(self, target), ct);

        // Tables still list the dead, so the live peers among the true k closest are what can be found.
        Assert.That(result.ClosestPeers, Is.SupersetOf(TrueClosest(target, self).Except(dead)));
        Assert.That(result.ClosestPeers, Has.None.Matches<PeerId>(dead.Contains));
        Assert.That(result.Stats.Failures, Is.GreaterThan(0));
        Assert.That(outcomes.Where(o => !o.Item2).Select(o => o.Item1), Is.SubsetOf(dead));
    }

    [Test]
    public void Lookup_TimesOutSilentPeers_AndContinuesWithOthers() => SimulationTest.Run(async sim =>
    {
        var self = DhtTestPeers.Get(0);
        var target = KadId.FromKey("silent"u8);
        // Every fourth peer by distance, so five of the true 20 closest are silent whatever the pool:
        // the lookup cannot converge before their queries time out.
        var silent = ByDistance(target, self).Where((_, i) => i % 4 == 2).ToHashSet();
        var options = new KademliaDhtOptions { TimeProvider = sim.Clock, QueryTimeout = TimeSpan.FromSeconds(2), LookupTimeout = TimeSpan.FromMinutes(5) };
        var lookup = NewLookup(target, self, options, async (p, token) =>
        {
            if (silent.Contains(p)) await Task.Delay(Timeout.InfiniteTimeSpan, sim.Clock, token);
            return Answer(p, target);
        });

        var result = await lookup.RunAsync(Seeds(self, target), CancellationToken.None);

        Assert.That(result.ClosestPeers, Is.SupersetOf(TrueClosest(target, self).Except(silent)));
        Assert.That(result.ClosestPeers, Has.None.Matches<PeerId>(silent.Contains));
        Assert.That(result.Stats.TimedOut, Is.False);
        Assert.That(result.Stats.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(2)));
    });

    [Test]
    public void Lookup_EndsAtOverallDeadline_WithWhatItHas() => SimulationTest.Run(async sim =>
    {
        var self = DhtTestPeers.Get(0);
        var target = KadId.FromKey("never"u8);
        var options = new KademliaDhtOptions { TimeProvider = sim.Clock, QueryTimeout = TimeSpan.FromMinutes(1), LookupTimeout = TimeSpan.FromSeconds(10) };
        var lookup = NewLookup(target, self, options, async (_, token) =>
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, sim.Clock, token);
            throw new InvalidOperationException("unreachable");
        });

        var result = await lookup.RunAsync(Seeds(self, target), CancellationToken.None);

        Assert.That(result.Stats.TimedOut, Is.True);
        Assert.That(result.ClosestPeers, Is.Empty);
        Assert.That(result.Stats.RequestsSent, Is.EqualTo(options.Alpha));
        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromSeconds(10)), "the lookup deadline, not the longer query timeout, ended it");
    });

    [Test]
    public async Task Lookup_StopsEarly_WhenHandlerHasWhatItWants(CancellationToken ct)
    {
        var self = DhtTestPeers.Get(0);
        var target = KadId.FromKey("early"u8);
        var options = new KademliaDhtOptions { TimeProvider = new FakeTimeProvider(), Alpha = 1 };
        var lookup = NewLookup(target, self, options, (p, _) => Task.FromResult(Answer(p, target)), (_, _, _) => true);

        var result = await lookup.RunAsync(Seeds(self, target), ct);

        Assert.That(result.Stats.RequestsSent, Is.EqualTo(1));
    }

    [Test]
    public async Task Lookup_WithNoSeeds_EndsAtOnce(CancellationToken ct)
    {
        var lookup = NewLookup(KadId.FromKey("x"u8), DhtTestPeers.Get(0), new KademliaDhtOptions { TimeProvider = new FakeTimeProvider() },
            (_, _) => throw new InvalidOperationException("no peer to ask"));

        var result = await lookup.RunAsync([], ct);

        Assert.That(result.ClosestPeers, Is.Empty);
        Assert.That(result.Stats.RequestsSent, Is.Zero);
    }

    [Test]
    public void Lookup_LearnsEveryAddressRepliesName_OncePerDistinctSet() => SimulationTest.Run(async sim =>
    {
        // a names X with x1, X names itself with x2, and b, answering last, names X with x1 again: the
        // order an exploring schedule once produced, when only the latest set was remembered.
        var self = DhtTestPeers.Get(0);
        PeerId a = DhtTestPeers.Get(1), b = DhtTestPeers.Get(2), x = DhtTestPeers.Get(3);
        var x1 = Multiaddress.Memory("x1");
        var x2 = Multiaddress.Memory("x2");
        Message Naming(Multiaddress address)
        {
            var wire = new Message.Types.Peer { Id = ByteString.CopyFrom(x.Bytes) };
            wire.Addrs.Add(ByteString.CopyFrom(address.Bytes));
            var reply = new Message { Type = Message.Types.MessageType.FindNode };
            reply.CloserPeers.Add(wire);
            return reply;
        }
        var replies = new Dictionary<PeerId, Message> { [a] = Naming(x1), [b] = Naming(x1), [x] = Naming(x2) };
        var learned = new List<IReadOnlyList<Multiaddress>>();
        var lookup = new KadLookup(KadId.FromPeer(x), self, new KademliaDhtOptions { TimeProvider = sim.Clock },
            async (p, ct) =>
            {
                if (p == b) await Task.Delay(TimeSpan.FromMilliseconds(100), sim.Clock, ct);
                return Received(replies[p]);
            },
            (_, _, _) => false, (_, _) => { },
            (peer, _) =>
            {
                if (peer.PeerId == x) learned.Add(peer.Addresses);
            });

        var result = await lookup.RunAsync([a, b], CancellationToken.None);

        Assert.That(result.ClosestPeers, Is.EquivalentTo(new[] { a, b, x }));
        // The same address bytes again add nothing; different ones are learned, so no address a reply names is lost.
        Assert.That(learned.SelectMany(l => l), Is.EqualTo(new[] { x1, x2 }));
    });

    [Test]
    public void Lookup_TellsWhoLearnsAPeer_TheScopeItsReplierWasReachedAt() => SimulationTest.Run(async sim =>
    {
        // What a name among the addresses may resolve to when dialed depends on it (PeerStore.NarrowestDialScope).
        var self = DhtTestPeers.Get(0);
        PeerId a = DhtTestPeers.Get(1), b = DhtTestPeers.Get(2), x = DhtTestPeers.Get(3), y = DhtTestPeers.Get(4);
        Message Naming(PeerId peer)
        {
            var reply = new Message { Type = Message.Types.MessageType.FindNode };
            reply.CloserPeers.Add(KadMessageCodec.FromPeer(peer, [Multiaddress.Parse("/dns4/peer.example/tcp/4001")], connected: false));
            return reply;
        }
        var learned = new List<(PeerId, AddressScope)>();
        var lookup = new KadLookup(KadId.FromPeer(x), self, new KademliaDhtOptions { TimeProvider = sim.Clock },
            async (p, ct) =>
            {
                await Task.Yield();
                return p == a ? KadReply.Parse(Naming(x).ToByteArray(), 1024, AddressScope.Private)
                    : p == b ? KadReply.Parse(Naming(y).ToByteArray(), 1024, AddressScope.Public)
                    : Received(new Message { Type = Message.Types.MessageType.FindNode });
            },
            (_, _, _) => false, (_, _) => { },
            (peer, scope) => learned.Add((peer.PeerId, scope)));

        await lookup.RunAsync([a, b], CancellationToken.None);

        Assert.That(learned, Is.EquivalentTo(new[] { (x, AddressScope.Private), (y, AddressScope.Public) }));
    });

    [Test]
    public void Lookup_TellsAddressSetsApart_WhenOneStartsWithTheOther() => SimulationTest.Run(async sim =>
    {
        // Sets are kept packed, each address behind its length: x1 and then x1 with x2 are two sets, learned both.
        var self = DhtTestPeers.Get(0);
        PeerId a = DhtTestPeers.Get(1), b = DhtTestPeers.Get(2), x = DhtTestPeers.Get(3);
        var x1 = Multiaddress.Memory("x1");
        var x2 = Multiaddress.Memory("x2");
        Message Naming(params Multiaddress[] addresses)
        {
            var wire = new Message.Types.Peer { Id = ByteString.CopyFrom(x.Bytes) };
            foreach (var address in addresses) wire.Addrs.Add(ByteString.CopyFrom(address.Bytes));
            var reply = new Message { Type = Message.Types.MessageType.FindNode };
            reply.CloserPeers.Add(wire);
            return reply;
        }
        var replies = new Dictionary<PeerId, Message> { [a] = Naming(x1), [b] = Naming(x1, x2), [x] = Naming(x1) };
        var learned = new List<Multiaddress[]>();
        var lookup = new KadLookup(KadId.FromPeer(x), self, new KademliaDhtOptions { TimeProvider = sim.Clock },
            async (p, ct) =>
            {
                if (p == b) await Task.Delay(TimeSpan.FromMilliseconds(100), sim.Clock, ct);
                return Received(replies[p]);
            },
            (_, _, _) => false, (_, _) => { },
            (peer, _) =>
            {
                if (peer.PeerId == x) learned.Add(peer.Addresses.ToArray());
            });

        await lookup.RunAsync([a, b], CancellationToken.None);

        Assert.That(learned, Is.EqualTo(new[] { new[] { x1 }, new[] { x1, x2 } }));
    });

    [Test]
    public void Lookup_DisposesEveryReply_ProcessedQueuedOrLate() => SimulationTest.Run(async sim =>
    {
        // A reply's closer peers are in pooled arrays until it is disposed: the one the lookup processed, those
        // still queued when it ended, and those that arrive after it ended must all go back.
        var self = DhtTestPeers.Get(0);
        var target = KadId.FromKey("dispose"u8);
        var options = new KademliaDhtOptions { TimeProvider = sim.Clock };
        var replies = new List<KadReply>();
        var started = 0;
        var lookup = new KadLookup(target, self, options, async (p, _) =>
            {
                // A third answer at once (one is processed, the rest queued behind it), the others after the end.
                var delay = TimeSpan.FromMilliseconds(started++ % 3);
                await Task.Delay(delay, sim.Clock, CancellationToken.None);
                var reply = Received(Answer(p, target));
                replies.Add(reply);
                return reply;
            },
            (_, reply, _) =>
            {
                Assert.That(reply.CloserPeer(0).Id.Length, Is.GreaterThan(0), "readable while it is handled");
                return true;
            },
            (_, _) => { }, (_, _) => { });

        var result = await lookup.RunAsync(Seeds(self, target), CancellationToken.None);
        await Task.Delay(TimeSpan.FromSeconds(1), sim.Clock);

        Assert.That(result.Stats.Responses, Is.EqualTo(1));
        Assert.That(replies, Has.Count.EqualTo(options.Alpha));
        foreach (var reply in replies) Assert.That(() => reply.CloserPeer(0), Throws.InstanceOf<ObjectDisposedException>());
    });

    [Test]
    public void Lookup_Throws_WhenCallerCancels()
    {
        var time = new FakeTimeProvider();
        var self = DhtTestPeers.Get(0);
        var target = KadId.FromKey("cancel"u8);
        using var cts = new CancellationTokenSource();
        var lookup = NewLookup(target, self, new KademliaDhtOptions { TimeProvider = time }, async (_, token) =>
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, time, token);
            throw new InvalidOperationException("unreachable");
        });

        var run = lookup.RunAsync(Seeds(self, target), cts.Token);
        cts.Cancel();

        Assert.That(async () => await run, Throws.InstanceOf<OperationCanceledException>());
    }
}
