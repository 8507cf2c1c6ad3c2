using NUnit.Framework;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.TestKit.Simulation;

namespace P2PInference.TestKit.Conformance;

/// <summary>
/// The behaviour every <see cref="IDiscovery"/> must have: announce, lookup, unannounce, expiry of
/// records whose provider stopped re-announcing, and refresh. Derive a fixture, say how to build N
/// nodes on the simulation's clock, how to crash one and who it is, configure the
/// implementation with <see cref="RecordTtl"/> and <see cref="ReannounceInterval"/>, and the suite
/// runs on it. This repository runs it on the mock DHT and on the Kademlia DHT over the in-memory
/// network.
/// </summary>
/// <remarks>
/// <para>
/// Each test runs on the simulation executor (<see cref="SimulationTest"/>): the nodes' work runs on
/// one thread and <see cref="Time"/> moves only when nothing is runnable, to the next due timer, so an
/// implementation that waits on its clock (timeouts, latency, re-announces) simply gets there. The
/// suite moves time in steps of <see cref="TimeStep"/>; every operation is awaited through
/// <see cref="RunAsync{T}"/>, which fails it after <see cref="OperationTimeLimit"/> of virtual time.
/// No test waits on real time, and a failure prints the seed and the command that replays it.
/// </para>
/// <para>
/// The suite does not require a crashed provider to be found until its record expires (a DHT may
/// notice the crash sooner), nor that an announcer finds itself.
/// </para>
/// </remarks>
[TestFixture]
public abstract class DiscoveryConformanceTests
{
    protected const string Topic = "p2pinference/conformance/topic";
    protected const string OtherTopic = "p2pinference/conformance/other";

    private readonly List<IDiscovery> _nodes = [];
    private readonly HashSet<IDiscovery> _stopped = new(ReferenceEqualityComparer.Instance);

    /// <summary>The clock the test's nodes run on: the simulation's, a new one per test.</summary>
    protected SimulationClock Time { get; private set; } = null!;

    /// <summary>The token the suite passes to operations; the virtual-time limits bound them instead.</summary>
    protected CancellationToken TestToken => CancellationToken.None;

    /// <summary>How long a record lives after its last announce. Configure the implementation with it, or override it to match.</summary>
    protected virtual TimeSpan RecordTtl => TimeSpan.FromMinutes(10);

    /// <summary>How often a live node re-announces. Must be below <see cref="RecordTtl"/>.</summary>
    protected virtual TimeSpan ReannounceInterval => TimeSpan.FromMinutes(5);

    /// <summary>
    /// How much longer than <see cref="RecordTtl"/> the suite waits before it expects an unrefreshed
    /// record gone, for implementations that purge expired records on a sweep timer; by default one
    /// <see cref="ReannounceInterval"/>.
    /// </summary>
    protected virtual TimeSpan ExpiryMargin => ReannounceInterval;

    /// <summary>
    /// How long a withdrawn record (unannounce, graceful stop) may still be found: zero when withdrawing
    /// removes it at once; up to <see cref="RecordTtl"/> plus <see cref="ExpiryMargin"/> for a DHT that
    /// can only stop re-announcing (libp2p Kademlia has no remove-provider message).
    /// </summary>
    protected virtual TimeSpan UnannounceGrace => TimeSpan.Zero;

    /// <summary>The size of the steps the suite moves time in; by default <see cref="ReannounceInterval"/>.</summary>
    protected virtual TimeSpan TimeStep => ReannounceInterval;

    /// <summary>The most virtual time one operation may take before the suite calls it hung; two minutes by default.</summary>
    protected virtual TimeSpan OperationTimeLimit => TimeSpan.FromMinutes(2);

    /// <summary>How many providers <see cref="Lookup_FindsEveryProvider_WhenManyAnnounceOneTopic"/> uses.</summary>
    protected virtual int ManyProviders => 10;

    /// <summary>
    /// <paramref name="count"/> discovery nodes that can find each other, on <paramref name="time"/>,
    /// configured with <see cref="RecordTtl"/> and <see cref="ReannounceInterval"/>. The suite awaits
    /// <see cref="IDiscovery.WaitUntilJoinedAsync"/> on each before it uses them.
    /// </summary>
    protected abstract Task<IReadOnlyList<IDiscovery>> CreateNodesAsync(int count, SimulationClock time, CancellationToken cancellationToken);

    /// <summary>
    /// Stops <paramref name="node"/> without a goodbye: no unannounce, no more re-announces (a killed
    /// process). The suite still calls <see cref="StopAsync"/> on it at teardown, to release what it holds.
    /// </summary>
    protected abstract Task CrashAsync(IDiscovery node);

    /// <summary>The PeerId lookups report for <paramref name="node"/>.</summary>
    protected abstract PeerId PeerOf(IDiscovery node);

    /// <summary>The addresses a lookup must report for <paramref name="node"/> (each must appear; more may).</summary>
    protected abstract IReadOnlyList<Multiaddress> AddressesOf(IDiscovery node);

    /// <summary>
    /// Stops <paramref name="node"/> gracefully (unannouncing its topics); by default disposes it
    /// (<see cref="IAsyncDisposable"/> or <see cref="IDisposable"/>). Called once per node: by
    /// <see cref="GracefulStop_RemovesProvider"/>, and at teardown for every other node, crashed ones
    /// included, so it must tolerate a crashed node.
    /// </summary>
    protected virtual async Task StopAsync(IDiscovery node)
    {
        switch (node)
        {
            case IAsyncDisposable asyncDisposable:
                await asyncDisposable.DisposeAsync();
                break;
            case IDisposable disposable:
                disposable.Dispose();
                break;
        }
    }

    [SetUp]
    public void CheckConfiguration()
    {
        Assert.That(ReannounceInterval, Is.LessThan(RecordTtl), "The suite needs re-announces to come before records expire.");
        // A run that failed mid-way did not get to stop its nodes; they died with its simulation.
        _nodes.Clear();
        _stopped.Clear();
    }

    /// <summary>
    /// Runs one test of the suite on a new simulation: <see cref="Time"/> is its clock, and the nodes
    /// the test created are stopped inside the run, after the body.
    /// </summary>
    protected void Simulate(Func<Task> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        SimulationTest.Run(async sim =>
        {
            Time = sim.Clock;
            try
            {
                await body();
            }
            finally
            {
                await StopNodesAsync();
            }
        });
    }

    private async Task StopNodesAsync()
    {
        try
        {
            foreach (var node in _nodes)
            {
                if (_stopped.Add(node))
                {
                    await RunAsync(async _ =>
                    {
                        await StopAsync(node);
                        return true;
                    });
                }
            }
        }
        finally
        {
            _nodes.Clear();
            _stopped.Clear();
        }
    }

    [Test]
    public void Lookup_FindsAnnouncer_WithItsAddresses() => Simulate(async () =>
    {
        var nodes = await NodesAsync(3);

        await AnnounceAsync(nodes[0], Topic);
        var found = await LookupAsync(nodes[2], Topic);

        Assert.That(found.Select(p => p.PeerId), Is.EqualTo(new[] { PeerOf(nodes[0]) }));
        Assert.That(found[0].Addresses, Is.SupersetOf(AddressesOf(nodes[0])));
    });

    [Test]
    public void Lookup_ReturnsEmpty_WhenTopicIsUnknown() => Simulate(async () =>
    {
        var nodes = await NodesAsync(2);
        await AnnounceAsync(nodes[0], Topic);

        var found = await LookupAsync(nodes[1], "p2pinference/conformance/nobody-announced-this");

        Assert.That(found, Is.Empty);
    });

    [Test]
    public void Lookup_ReturnsOnlyProvidersOfThatTopic() => Simulate(async () =>
    {
        var nodes = await NodesAsync(3);

        await AnnounceAsync(nodes[0], Topic);
        await AnnounceAsync(nodes[1], OtherTopic);

        Assert.That(PeersOf(await LookupAsync(nodes[2], Topic)), Is.EquivalentTo(new[] { PeerOf(nodes[0]) }));
        Assert.That(PeersOf(await LookupAsync(nodes[2], OtherTopic)), Is.EquivalentTo(new[] { PeerOf(nodes[1]) }));
    });

    [Test]
    public void Lookup_ListsProviderOnce_WhenItAnnouncedTwice() => Simulate(async () =>
    {
        var nodes = await NodesAsync(2);

        await AnnounceAsync(nodes[0], Topic);
        await AnnounceAsync(nodes[0], Topic);

        Assert.That(PeersOf(await LookupAsync(nodes[1], Topic)), Is.EqualTo(new[] { PeerOf(nodes[0]) }));
    });

    [Test]
    public void Lookup_FindsEveryProvider_WhenManyAnnounceOneTopic() => Simulate(async () =>
    {
        var nodes = await NodesAsync(ManyProviders + 1);
        var providers = nodes.Take(ManyProviders).ToList();

        foreach (var provider in providers)
        {
            await AnnounceAsync(provider, Topic);
        }

        var found = PeersOf(await LookupAsync(nodes[^1], Topic));

        Assert.That(found, Is.Unique);
        Assert.That(found, Is.EquivalentTo(providers.Select(PeerOf)));
    });

    [Test]
    public void Unannounce_RemovesProvider_WhileOthersStay() => Simulate(async () =>
    {
        var nodes = await NodesAsync(3);
        await AnnounceAsync(nodes[0], Topic);
        await AnnounceAsync(nodes[1], Topic);
        Assert.That(PeersOf(await LookupAsync(nodes[2], Topic)), Is.EquivalentTo(new[] { PeerOf(nodes[0]), PeerOf(nodes[1]) }));

        await RunAsync(async ct =>
        {
            await nodes[0].UnannounceAsync(Topic, ct);
            return true;
        });
        await AdvanceAsync(UnannounceGrace);

        Assert.That(PeersOf(await LookupAsync(nodes[2], Topic)), Is.EquivalentTo(new[] { PeerOf(nodes[1]) }));
    });

    [Test]
    public void Announce_FindsProviderAgain_AfterUnannounce() => Simulate(async () =>
    {
        var nodes = await NodesAsync(2);
        await AnnounceAsync(nodes[0], Topic);
        await RunAsync(async ct =>
        {
            await nodes[0].UnannounceAsync(Topic, ct);
            return true;
        });
        await AdvanceAsync(UnannounceGrace);

        await AnnounceAsync(nodes[0], Topic);

        Assert.That(PeersOf(await LookupAsync(nodes[1], Topic)), Is.EqualTo(new[] { PeerOf(nodes[0]) }));
    });

    [Test]
    public void Unannounce_DoesNothing_WhenTopicWasNotAnnounced() => Simulate(async () =>
    {
        var nodes = await NodesAsync(2);
        await AnnounceAsync(nodes[1], Topic);

        await RunAsync(async ct =>
        {
            await nodes[0].UnannounceAsync(Topic, ct);
            return true;
        });

        Assert.That(PeersOf(await LookupAsync(nodes[0], Topic)), Is.EqualTo(new[] { PeerOf(nodes[1]) }));
    });

    [Test]
    public void GracefulStop_RemovesProvider() => Simulate(async () =>
    {
        var nodes = await NodesAsync(3);
        await AnnounceAsync(nodes[0], Topic);
        await AnnounceAsync(nodes[1], Topic);

        Assert.That(_stopped.Add(nodes[0]), Is.True);
        await RunAsync(async _ =>
        {
            await StopAsync(nodes[0]);
            return true;
        });
        await AdvanceAsync(UnannounceGrace);

        Assert.That(PeersOf(await LookupAsync(nodes[2], Topic)), Is.EquivalentTo(new[] { PeerOf(nodes[1]) }));
    });

    [Test]
    public void Record_Expires_AfterTtl_WhenProviderCrashed() => Simulate(async () =>
    {
        var nodes = await NodesAsync(3);
        await AnnounceAsync(nodes[0], Topic);
        await AdvanceAsync(ReannounceInterval + ReannounceInterval / 2);

        await CrashAsync(nodes[0]);
        await AdvanceAsync(RecordTtl + ExpiryMargin);

        Assert.That(await LookupAsync(nodes[2], Topic), Is.Empty);
    });

    [Test]
    public void Refresh_KeepsRecordAlive_AcrossSeveralTtls() => Simulate(async () =>
    {
        var nodes = await NodesAsync(2);
        await AnnounceAsync(nodes[0], Topic);
        var end = Time.GetUtcNow() + 3 * RecordTtl + ExpiryMargin;

        while (Time.GetUtcNow() < end)
        {
            await AdvanceAsync(TimeStep);
            Assert.That(
                PeersOf(await LookupAsync(nodes[1], Topic)),
                Is.EqualTo(new[] { PeerOf(nodes[0]) }),
                $"at {Time}, {Time.GetUtcNow() - Time.Start} after the start");
        }
    });

    [Test]
    public void CrashedProvider_Disappears_AfterTtl_WhileLiveProvidersStay() => Simulate(async () =>
    {
        var nodes = await NodesAsync(5);
        foreach (var provider in nodes.Take(3))
        {
            await AnnounceAsync(provider, Topic);
        }

        await AdvanceAsync(ReannounceInterval / 2);
        await CrashAsync(nodes[1]);
        await AdvanceAsync(RecordTtl + ExpiryMargin);

        Assert.That(PeersOf(await LookupAsync(nodes[4], Topic)), Is.EquivalentTo(new[] { PeerOf(nodes[0]), PeerOf(nodes[2]) }));
        Assert.That(PeersOf(await LookupAsync(nodes[3], Topic)), Is.EquivalentTo(new[] { PeerOf(nodes[0]), PeerOf(nodes[2]) }));
    });

    [Test]
    public void Lookup_Throws_WhenAlreadyCancelled() => Simulate(async () =>
    {
        var nodes = await NodesAsync(2);
        await AnnounceAsync(nodes[0], Topic);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();

        await Assert.ThatAsync(() => nodes[1].LookupAsync(Topic, cancelled.Token), Throws.InstanceOf<OperationCanceledException>());
    });

    /// <summary>
    /// Awaits an operation on the nodes; virtual time moves while it waits on its clock, and it fails
    /// with <see cref="TimeoutException"/> after <see cref="OperationTimeLimit"/> of virtual time.
    /// </summary>
    protected async Task<T> RunAsync<T>(Func<CancellationToken, Task<T>> operation)
    {
        ArgumentNullException.ThrowIfNull(operation);
        return await operation(TestToken).WaitAsync(OperationTimeLimit, Time);
    }

    /// <summary>Moves time forward by <paramref name="total"/> in steps of at most <see cref="TimeStep"/>, each followed by the work its timers started.</summary>
    protected async Task AdvanceAsync(TimeSpan total)
    {
        while (total > TimeSpan.Zero)
        {
            var step = total < TimeStep ? total : TimeStep;
            await Time.AdvanceAsync(step);
            total -= step;
        }

        await Time.RunUntilIdleAsync();
    }

    /// <summary><paramref name="count"/> joined nodes, stopped after the test.</summary>
    protected async Task<IReadOnlyList<IDiscovery>> NodesAsync(int count)
    {
        var nodes = await RunAsync(ct => CreateNodesAsync(count, Time, ct));
        Assert.That(nodes, Has.Count.EqualTo(count));
        _nodes.AddRange(nodes);
        foreach (var node in nodes)
        {
            await RunAsync(async ct =>
            {
                await node.WaitUntilJoinedAsync(ct);
                return true;
            });
        }

        return nodes;
    }

    protected Task AnnounceAsync(IDiscovery node, string topic) =>
        RunAsync(async ct =>
        {
            await node.AnnounceAsync(topic, ct);
            return true;
        });

    protected Task<IReadOnlyList<DiscoveredPeer>> LookupAsync(IDiscovery node, string topic) =>
        RunAsync(ct => node.LookupAsync(topic, ct));

    private static List<PeerId> PeersOf(IReadOnlyList<DiscoveredPeer> found) => [.. found.Select(p => p.PeerId)];
}
