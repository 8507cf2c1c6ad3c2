using System.Security.Cryptography;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.TestKit;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Simulation;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.Tests.Unit.Discovery;

/// <summary>The mock DHT's own knobs; its IDiscovery behaviour is covered by <see cref="MockDhtConformanceTests"/>.</summary>
[CancelAfter(10000)]
public sealed class MockDhtTests
{
    private const string Topic = "p2pinference/processor";
    private const string OtherTopic = "p2pinference/gateway";

    private SimulationClock _time = null!;
    private Random _random = null!;
    private int _registrySeed;
    private MockDhtRegistry _registry = null!;

    [SetUp]
    public void CreateRegistry()
    {
        _random = TestSeed.CreateRandom();
        _registrySeed = _random.Next();
        // Tests that never wait use a settable clock; the rest run on the executor (see Sim).
        _registry = new MockDhtRegistry(new FakeTimeProvider(), _registrySeed);
    }

    /// <summary>Runs a test on the simulation executor, with the registry on its clock.</summary>
    private void Sim(Func<Task> body) => SimulationTest.Run(async sim =>
    {
        _time = sim.Clock;
        _registry = new MockDhtRegistry(_time, _registrySeed);
        await body();
    });

    [Test]
    public void Lookup_CompletesOnlyAfterLookupDelay_OfFakeTime() => Sim(async () =>
    {
        _registry.LookupDelay = TimeSpan.FromSeconds(2);
        var (a, b) = (Node(), Node());
        await a.AnnounceAsync(Topic, CancellationToken.None);

        var lookup = b.LookupAsync(Topic, CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromSeconds(2) - TimeSpan.FromTicks(1));
        Assert.That(lookup.IsCompleted, Is.False);

        await _time.AdvanceAsync(TimeSpan.FromTicks(1));
        Assert.That(lookup.IsCompleted, Is.True);
        Assert.That(Peers(await lookup), Is.EqualTo(new[] { a.PeerId }));
    });

    [Test]
    public void Lookup_SeesRecordsAsTheyAreWhenItCompletes_WhenDelayed() => Sim(async () =>
    {
        _registry.LookupDelay = TimeSpan.FromSeconds(2);
        var (a, b) = (Node(), Node());

        var lookup = b.LookupAsync(Topic, CancellationToken.None);
        await a.AnnounceAsync(Topic, CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromSeconds(2));

        Assert.That(Peers(await lookup), Is.EqualTo(new[] { a.PeerId }));
    });

    [Test]
    public void Lookup_IsCancelled_WhenTokenFiresDuringDelay() => Sim(async () =>
    {
        _registry.LookupDelay = TimeSpan.FromSeconds(2);
        var node = Node();
        using var cts = new CancellationTokenSource();

        var lookup = node.LookupAsync(Topic, cts.Token);
        // Cancel, not CancelAsync: CancelAsync runs the callbacks on the thread pool, outside the simulation.
        cts.Cancel();

        await Assert.ThatAsync(() => lookup, Throws.InstanceOf<OperationCanceledException>());
    });

    [Test]
    public void Lookup_FailsWithObjectDisposed_WhenNodeCrashesDuringDelay() => Sim(async () =>
    {
        _registry.LookupDelay = TimeSpan.FromSeconds(2);
        var node = Node();

        var lookup = node.LookupAsync(Topic, CancellationToken.None);
        node.Crash();
        await _time.AdvanceAsync(TimeSpan.FromSeconds(2));

        await Assert.ThatAsync(() => lookup, Throws.InstanceOf<ObjectDisposedException>());
    });

    [Test]
    public void Lookup_CompletesSynchronously_WithoutDelay()
    {
        var node = Node();

        var lookup = node.LookupAsync(Topic, CancellationToken.None);

        Assert.That(lookup.IsCompletedSuccessfully, Is.True);
        Assert.That(lookup.Result, Is.Empty);
    }

    [Test]
    public void WaitUntilJoined_CompletesAtOnce_ByDefault()
    {
        Assert.That(Node().WaitUntilJoinedAsync(CancellationToken.None).IsCompletedSuccessfully, Is.True);
    }

    [Test]
    public void WaitUntilJoined_CompletesAfterJoinDelay() => Sim(async () =>
    {
        _registry.JoinDelay = TimeSpan.FromSeconds(5);
        var node = Node();

        var joined = node.WaitUntilJoinedAsync(CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromSeconds(4));
        Assert.That(joined.IsCompleted, Is.False);

        await _time.AdvanceAsync(TimeSpan.FromSeconds(1));
        Assert.That(joined.IsCompletedSuccessfully, Is.True);
    });

    [Test]
    public void MissingRecords_HidesProvider_OnlyForMatchingTopic() => Sim(async () =>
    {
        var (a, b, c) = (Node(), Node(), Node());
        await a.AnnounceAsync(Topic, CancellationToken.None);
        await b.AnnounceAsync(Topic, CancellationToken.None);
        await b.AnnounceAsync(OtherTopic, CancellationToken.None);

        _registry.MissingRecords = (lookup, provider) => lookup.Topic == Topic && provider == b.PeerId;

        Assert.That(Peers(await c.LookupAsync(Topic, CancellationToken.None)), Is.EqualTo(new[] { a.PeerId }));
        Assert.That(Peers(await c.LookupAsync(OtherTopic, CancellationToken.None)), Is.EqualTo(new[] { b.PeerId }));
    });

    [Test]
    public void MissingRecords_CanHideProvider_FromOneRequesterOnly() => Sim(async () =>
    {
        var (a, b, c) = (Node(), Node(), Node());
        await a.AnnounceAsync(Topic, CancellationToken.None);

        _registry.MissingRecords = (lookup, _) => lookup.Requester == b.PeerId;

        Assert.That(await b.LookupAsync(Topic, CancellationToken.None), Is.Empty);
        Assert.That(Peers(await c.LookupAsync(Topic, CancellationToken.None)), Is.EqualTo(new[] { a.PeerId }));
    });

    [Test]
    public void Providers_ShowsEveryRecord_IgnoringKnobsAndWithoutCountingALookup() => Sim(async () =>
    {
        var (a, b) = (Node(), Node());
        await a.AnnounceAsync(Topic, CancellationToken.None);
        _registry.MissingRecords = (_, _) => true;
        _registry.FailLookups = _ => new MockDhtLookupException();

        var providers = _registry.Providers(Topic);

        Assert.That(providers, Is.EqualTo(new[] { new DiscoveredPeer(a.PeerId, a.Addresses) }));
        Assert.That(_registry.TotalLookupCount, Is.Zero);
        Assert.That(_registry.Providers("nobody/announced/this"), Is.Empty);
    });

    [Test]
    public void Crash_LeavesRecordFindable_UntilExactlyTtlAfterLastAnnounce() => Sim(async () =>
    {
        _registry.RecordTtl = TimeSpan.FromMinutes(10);
        _registry.ReannounceInterval = TimeSpan.FromMinutes(4);
        var (a, b) = (Node(), Node());
        await a.AnnounceAsync(Topic, CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromMinutes(5)); // last re-announce at 4 min

        a.Crash();
        Assert.That(Peers(await b.LookupAsync(Topic, CancellationToken.None)), Is.EqualTo(new[] { a.PeerId }));

        await _time.AdvanceAsync(TimeSpan.FromMinutes(9) - TimeSpan.FromTicks(1)); // 14 min - 1 tick
        Assert.That(Peers(await b.LookupAsync(Topic, CancellationToken.None)), Is.EqualTo(new[] { a.PeerId }));

        await _time.AdvanceAsync(TimeSpan.FromTicks(1));
        Assert.That(await b.LookupAsync(Topic, CancellationToken.None), Is.Empty);
        Assert.That(_time.PendingTimers, Is.Zero, "a crashed node keeps no re-announce timer");
    });

    [Test]
    public void Record_LapsesBetweenReannounces_WhenIntervalExceedsTtl() => Sim(async () =>
    {
        _registry.RecordTtl = TimeSpan.FromMinutes(10);
        _registry.ReannounceInterval = TimeSpan.FromMinutes(15);
        var (a, b) = (Node(), Node());
        await a.AnnounceAsync(Topic, CancellationToken.None);

        await _time.AdvanceAsync(TimeSpan.FromMinutes(12));
        Assert.That(await b.LookupAsync(Topic, CancellationToken.None), Is.Empty);

        await _time.AdvanceAsync(TimeSpan.FromMinutes(3));
        Assert.That(Peers(await b.LookupAsync(Topic, CancellationToken.None)), Is.EqualTo(new[] { a.PeerId }));
    });

    [Test]
    public void Unannounce_WithdrawsRecordAtOnce_ByDefault() => Sim(async () =>
    {
        var (a, b) = (Node(), Node());
        await a.AnnounceAsync(Topic, CancellationToken.None);

        await a.UnannounceAsync(Topic, CancellationToken.None);

        Assert.That(await b.LookupAsync(Topic, CancellationToken.None), Is.Empty);
        Assert.That(a.AnnouncedTopics, Is.Empty);
        Assert.That(_time.PendingTimers, Is.Zero);
    });

    [Test]
    public void StaleRecords_KeepsWithdrawnRecords_UntilTtl() => Sim(async () =>
    {
        _registry.StaleRecords = true;
        var (a, b, c) = (Node(), Node(), Node());
        await a.AnnounceAsync(Topic, CancellationToken.None);
        await b.AnnounceAsync(Topic, CancellationToken.None);

        await a.UnannounceAsync(Topic, CancellationToken.None);
        await b.DisposeAsync();
        Assert.That(Peers(await c.LookupAsync(Topic, CancellationToken.None)), Is.EquivalentTo(new[] { a.PeerId, b.PeerId }));

        await _time.AdvanceAsync(_registry.RecordTtl);
        Assert.That(await c.LookupAsync(Topic, CancellationToken.None), Is.Empty);
    });

    [Test]
    public void InjectStaleRecord_IsFound_UntilItsTtl() => Sim(async () =>
    {
        var node = Node();
        var gone = Peer();
        var addresses = new[] { Multiaddress.Memory("gone") };

        _registry.InjectStaleRecord(Topic, gone, addresses, TimeSpan.FromMinutes(1));

        var found = await node.LookupAsync(Topic, CancellationToken.None);
        Assert.That(Peers(found), Is.EqualTo(new[] { gone }));
        Assert.That(found[0].Addresses, Is.EqualTo(addresses));

        await _time.AdvanceAsync(TimeSpan.FromMinutes(1));
        Assert.That(await node.LookupAsync(Topic, CancellationToken.None), Is.Empty);
    });

    [Test]
    public void InjectStaleRecord_LastsRecordTtl_ByDefault() => Sim(async () =>
    {
        var node = Node();
        _registry.InjectStaleRecord(Topic, Peer(), [Multiaddress.Memory("gone")]);

        await _time.AdvanceAsync(_registry.RecordTtl - TimeSpan.FromTicks(1));
        Assert.That(await node.LookupAsync(Topic, CancellationToken.None), Has.Count.EqualTo(1));

        await _time.AdvanceAsync(TimeSpan.FromTicks(1));
        Assert.That(await node.LookupAsync(Topic, CancellationToken.None), Is.Empty);
    });

    [Test]
    public void RestartedPeer_ReplacesItsStaleRecord_WithNewAddresses() => Sim(async () =>
    {
        var observer = Node();
        var peer = Peer();
        var first = _registry.CreateNode(peer, [Multiaddress.Memory("before")]);
        await first.AnnounceAsync(Topic, CancellationToken.None);
        first.Crash();

        var restarted = _registry.CreateNode(peer, [Multiaddress.Memory("after")]);
        await restarted.AnnounceAsync(Topic, CancellationToken.None);

        var found = await observer.LookupAsync(Topic, CancellationToken.None);
        Assert.That(found, Has.Count.EqualTo(1));
        Assert.That(found[0].Addresses, Is.EqualTo(new[] { Multiaddress.Memory("after") }));
    });

    [Test]
    public void CreateNode_Throws_WhenPeerAlreadyHasLiveNode()
    {
        var node = Node();

        Assert.That(() => _registry.CreateNode(node.PeerId, []), Throws.InvalidOperationException);
        Assert.That(_registry.LiveNodes, Is.EqualTo(new[] { node }));
    }

    [Test]
    public void Node_RefusesOperations_AfterCrashOrDispose() => Sim(async () =>
    {
        var (crashed, disposed) = (Node(), Node());
        crashed.Crash();
        await disposed.DisposeAsync();

        foreach (var node in new[] { crashed, disposed })
        {
            Assert.That(node.IsAlive, Is.False);
            Assert.That(() => node.AnnounceAsync(Topic, CancellationToken.None), Throws.InstanceOf<ObjectDisposedException>());
            Assert.That(() => node.UnannounceAsync(Topic, CancellationToken.None), Throws.InstanceOf<ObjectDisposedException>());
            Assert.That(() => node.LookupAsync(Topic, CancellationToken.None), Throws.InstanceOf<ObjectDisposedException>());
            Assert.That(() => node.WaitUntilJoinedAsync(CancellationToken.None), Throws.InstanceOf<ObjectDisposedException>());
        }

        Assert.That(_registry.LiveNodes, Is.Empty);
    });

    [Test]
    public void FailLookups_ThrowsTheGivenException_UntilCleared() => Sim(async () =>
    {
        var (a, b) = (Node(), Node());
        await a.AnnounceAsync(Topic, CancellationToken.None);

        _registry.FailLookups = _ => new MockDhtLookupException("DHT unreachable");
        await Assert.ThatAsync(
            () => b.LookupAsync(Topic, CancellationToken.None),
            Throws.TypeOf<MockDhtLookupException>().With.Message.EqualTo("DHT unreachable"));

        _registry.FailLookups = null;
        Assert.That(Peers(await b.LookupAsync(Topic, CancellationToken.None)), Is.EqualTo(new[] { a.PeerId }));
    });

    [Test]
    public void FailLookups_CanFailOneTopic_AndOnlyTheFirstLookups() => Sim(async () =>
    {
        var (a, b) = (Node(), Node());
        await a.AnnounceAsync(Topic, CancellationToken.None);
        await a.AnnounceAsync(OtherTopic, CancellationToken.None);
        _registry.FailLookups = lookup => lookup.Topic == Topic && lookup.Number <= 2 ? new TimeoutException() : null;

        await Assert.ThatAsync(() => b.LookupAsync(Topic, CancellationToken.None), Throws.TypeOf<TimeoutException>());
        Assert.That(await b.LookupAsync(OtherTopic, CancellationToken.None), Has.Count.EqualTo(1));
        Assert.That(await b.LookupAsync(Topic, CancellationToken.None), Has.Count.EqualTo(1));
    });

    [Test]
    public void FailLookups_FailsAfterLookupDelay() => Sim(async () =>
    {
        _registry.LookupDelay = TimeSpan.FromSeconds(10);
        _registry.FailLookups = _ => new MockDhtLookupException();
        var node = Node();

        var lookup = node.LookupAsync(Topic, CancellationToken.None);
        await _time.AdvanceAsync(TimeSpan.FromSeconds(9));
        Assert.That(lookup.IsCompleted, Is.False);

        await _time.AdvanceAsync(TimeSpan.FromSeconds(1));
        await Assert.ThatAsync(() => lookup, Throws.TypeOf<MockDhtLookupException>());
    });

    [Test]
    public void LookupCounts_CountEveryLookup_PerTopicPerNodeAndInAll() => Sim(async () =>
    {
        var (a, b) = (Node(), Node());
        _ = await a.LookupAsync(Topic, CancellationToken.None);
        _ = await a.LookupAsync(Topic, CancellationToken.None);
        _ = await b.LookupAsync(OtherTopic, CancellationToken.None);
        _registry.FailLookups = _ => new MockDhtLookupException();
        await Assert.ThatAsync(() => b.LookupAsync(Topic, CancellationToken.None), Throws.TypeOf<MockDhtLookupException>());

        Assert.That(_registry.LookupCount(Topic), Is.EqualTo(3));
        Assert.That(_registry.LookupCount(OtherTopic), Is.EqualTo(1));
        Assert.That(_registry.LookupCount("never/looked/up"), Is.Zero);
        Assert.That(_registry.TotalLookupCount, Is.EqualTo(4));
        Assert.That((a.LookupCount, b.LookupCount), Is.EqualTo((2, 2)));
    });

    [Test]
    public void SeededOrder_IsTheSame_ForTheSameSeed_AndStableAcrossLookups() => Sim(async () =>
    {
        var keys = FixedKeys(12);
        var first = await LookupWithAllAnnouncingAsync(seed: 7, MockDhtResultOrder.Seeded, keys);
        var again = await LookupWithAllAnnouncingAsync(seed: 7, MockDhtResultOrder.Seeded, keys);
        var otherSeed = await LookupWithAllAnnouncingAsync(seed: 8, MockDhtResultOrder.Seeded, keys);

        Assert.That(again, Is.EqualTo(first));
        Assert.That(otherSeed, Is.EquivalentTo(first));
        Assert.That(otherSeed, Is.Not.EqualTo(first), "another seed gives another order");
    });

    [Test]
    public void XorOrder_ListsClosestProviderToTopicKeyFirst() => Sim(async () =>
    {
        var keys = FixedKeys(12);
        var target = SHA256.HashData(TopicKey.For(Topic));
        var expected = keys
            .Select(k => k.PeerId)
            .OrderBy(p => Convert.ToHexString(Xor(SHA256.HashData(p.Bytes), target)), StringComparer.Ordinal)
            .ToList();

        var found = await LookupWithAllAnnouncingAsync(seed: 1, MockDhtResultOrder.XorDistance, keys);

        Assert.That(found, Is.EqualTo(expected));
    });

    [Test]
    public void DropRecords_RemovesAllRecords_UntilLiveNodesReannounce() => Sim(async () =>
    {
        var (a, b) = (Node(), Node());
        await a.AnnounceAsync(Topic, CancellationToken.None);

        _registry.DropRecords(Topic);
        Assert.That(await b.LookupAsync(Topic, CancellationToken.None), Is.Empty);

        await _time.AdvanceAsync(_registry.ReannounceInterval);
        Assert.That(Peers(await b.LookupAsync(Topic, CancellationToken.None)), Is.EqualTo(new[] { a.PeerId }));
    });

    [Test]
    public void Lookup_IncludesTheAnnouncerItself() => Sim(async () =>
    {
        var node = Node();
        await node.AnnounceAsync(Topic, CancellationToken.None);

        Assert.That(Peers(await node.LookupAsync(Topic, CancellationToken.None)), Is.EqualTo(new[] { node.PeerId }));
    });

    [Test]
    public void Knobs_RejectNonsenseValues()
    {
        Assert.That(() => _registry.RecordTtl = TimeSpan.Zero, Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => _registry.ReannounceInterval = TimeSpan.FromSeconds(-1), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => _registry.LookupDelay = TimeSpan.FromSeconds(-1), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => _registry.JoinDelay = TimeSpan.FromSeconds(-1), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => _registry.InjectStaleRecord(Topic, Peer(), [], TimeSpan.Zero), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    private static List<KeyPair> FixedKeys(int count)
    {
        // Fixed keys, not the test seed: the order assertions compare specific permutations.
        var random = new Random(20261122);
        return [.. Enumerable.Range(0, count).Select(_ => KeyPair.FromRandom(random))];
    }

    private static byte[] Xor(byte[] a, byte[] b) => [.. a.Zip(b, (x, y) => (byte)(x ^ y))];

    private static List<PeerId> Peers(IReadOnlyList<DiscoveredPeer> found) => [.. found.Select(p => p.PeerId)];

    private static async Task<List<PeerId>> LookupWithAllAnnouncingAsync(int seed, MockDhtResultOrder order, List<KeyPair> keys)
    {
        var registry = new MockDhtRegistry(new FakeTimeProvider(), seed) { ResultOrder = order };
        var nodes = keys.Select((k, i) => registry.CreateNode(k.PeerId, [Multiaddress.Memory($"n{i}")])).ToList();
        foreach (var node in nodes)
        {
            await node.AnnounceAsync(Topic, CancellationToken.None);
        }

        var first = Peers(await nodes[0].LookupAsync(Topic, CancellationToken.None));
        var second = Peers(await nodes[^1].LookupAsync(Topic, CancellationToken.None));
        Assert.That(second, Is.EqualTo(first), "every lookup of a topic returns the same order");
        return first;
    }

    private PeerId Peer() => KeyPair.FromRandom(_random).PeerId;

    private MockDht Node() => _registry.CreateNode(Peer(), [Multiaddress.Memory($"node-{_registry.LiveNodes.Count}")]);
}
