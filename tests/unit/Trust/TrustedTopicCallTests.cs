using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Threading;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Trust;

/// <summary>
/// Topic calls through a <see cref="TrustedRpcClient"/> when anyone may announce the topic: a provider
/// that announces it and never answers the grant query (or drops every packet) costs a call no more
/// than its deadline, and later calls do not wait on it again; nor does a call to one such peer outlive its
/// own timeout. On the RPC twin and the mock DHT, in virtual time.
/// </summary>
[TestFixture]
public sealed class TrustedTopicCallTests
{
    private const string Topic = "p2pinference/gateway";
    private const string Method = "gateway.who";
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(2);

    [Test]
    public void SilentProviderBesideARealOne_TheCallIsServedByTheRealOneWithinItsDeadline_AndTheNextCallDoesNotWaitOnTheSilentOne(
        [Values] bool dropsPackets) => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var fake = await world.ProviderAsync(dropsPackets ? Silence.DropsPackets : Silence.NeverAnswers);
        var real = await world.ProviderAsync(Silence.None);
        // The first choice is the silent one, so the first call has to get past it.
        var client = await world.ClientAsync(prefer: fake.Node.PeerId);

        var (first, firstTook) = await world.TimedAsync(() => client.RequestTopicAsync(Topic, Method, ReadOnlyMemory<byte>.Empty,
            new RpcCallOptions { Timeout = CallTimeout }, CancellationToken.None));
        var queriesAfterFirst = world.GrantQueriesTo(fake);
        var (second, secondTook) = await world.TimedAsync(() => client.RequestTopicAsync(Topic, Method, ReadOnlyMemory<byte>.Empty,
            new RpcCallOptions { Timeout = CallTimeout }, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(Text(first), Is.EqualTo(real.Name));
            Assert.That(firstTook, Is.LessThanOrEqualTo(CallTimeout), "the first call is served within its deadline");
            Assert.That(queriesAfterFirst, Is.EqualTo(1), "the first call did ask the silent provider (not vacuous)");
            Assert.That(Text(second), Is.EqualTo(real.Name));
            Assert.That(secondTook, Is.EqualTo(TimeSpan.Zero), "the second call does not wait on the silent provider");
            Assert.That(world.GrantQueriesTo(fake), Is.EqualTo(1), "the silent provider is not asked again");
            Assert.That(fake.Requests, Is.Zero);
        });
    });

    [Test]
    public void OnlyProviderSilent_TheCallFailsByItsDeadline_NotAfterTheGrantQuerysOwnTimeout() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var fake = await world.ProviderAsync(Silence.NeverAnswers);
        var client = await world.ClientAsync(prefer: null);

        var (error, took) = await world.TimedFailureAsync(() => client.RequestTopicAsync(Topic, Method, ReadOnlyMemory<byte>.Empty,
            new RpcCallOptions { Timeout = CallTimeout }, CancellationToken.None));
        var (again, againTook) = await world.TimedFailureAsync(() => client.RequestTopicAsync(Topic, Method, ReadOnlyMemory<byte>.Empty,
            new RpcCallOptions { Timeout = CallTimeout }, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(error.Code, Is.AnyOf(RpcStatusCode.DeadlineExceeded, RpcStatusCode.Unavailable), error.Message);
            Assert.That(took, Is.LessThanOrEqualTo(CallTimeout), "no later than the call's deadline");
            Assert.That(again.Code, Is.AnyOf(RpcStatusCode.DeadlineExceeded, RpcStatusCode.Unavailable), again.Message);
            Assert.That(againTook, Is.LessThanOrEqualTo(CallTimeout));
            Assert.That(world.GrantQueriesTo(fake), Is.EqualTo(1), "asked once, then remembered as failed");
            Assert.That(fake.Requests, Is.Zero);
        });
    });

    [Test]
    public void SilentProvider_AmongAllProviders_IsLeftOut_WithinTheDeadline_AndNotAskedAgain() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var fake = await world.ProviderAsync(Silence.NeverAnswers);
        var real = await world.ProviderAsync(Silence.None);
        var client = await world.ClientAsync(prefer: null);

        var (first, firstTook) = await world.TimedAsync(() => client.RequestAllAsync(Topic, Method, ReadOnlyMemory<byte>.Empty,
            new RpcCallOptions { Timeout = CallTimeout }, CancellationToken.None));
        var (second, secondTook) = await world.TimedAsync(() => client.RequestAllAsync(Topic, Method, ReadOnlyMemory<byte>.Empty,
            new RpcCallOptions { Timeout = CallTimeout }, CancellationToken.None));

        Assert.Multiple(() =>
        {
            // The silent one is reported skipped, with why; only the real one was called.
            Assert.That(first.Where(r => !r.Skipped).Select(r => r.Peer), Is.EqualTo(new[] { real.Node.PeerId }));
            Assert.That(first.Where(r => r.Skipped).Select(r => (r.Peer, r.Error!.NotDelivered)), Is.EqualTo(new[] { (fake.Node.PeerId, true) }));
            Assert.That(firstTook, Is.LessThanOrEqualTo(CallTimeout));
            Assert.That(second.Where(r => !r.Skipped).Select(r => r.Peer), Is.EqualTo(new[] { real.Node.PeerId }));
            Assert.That(secondTook, Is.EqualTo(TimeSpan.Zero));
            Assert.That(world.GrantQueriesTo(fake), Is.EqualTo(1));
        });
    });

    [Test]
    public void SlowProvider_WhoseQueryANearlySpentCallCutShort_IsNotHeldAgainstIt_AndServesTheNextCall() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var slow = await world.ProviderAsync(Silence.AnswersAfter700Ms);
        var client = await world.ClientAsync(prefer: null);

        // Half of a 1 s deadline is too little to tell a silent provider from a slow one.
        var (error, _) = await world.TimedFailureAsync(() => client.RequestTopicAsync(Topic, Method, ReadOnlyMemory<byte>.Empty,
            new RpcCallOptions { Timeout = TimeSpan.FromSeconds(1) }, CancellationToken.None));
        var (answer, took) = await world.TimedAsync(() => client.RequestTopicAsync(Topic, Method, ReadOnlyMemory<byte>.Empty,
            new RpcCallOptions { Timeout = TimeSpan.FromSeconds(30) }, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(error.Code, Is.AnyOf(RpcStatusCode.DeadlineExceeded, RpcStatusCode.Unavailable), error.Message);
            Assert.That(Text(answer), Is.EqualTo(slow.Name));
            Assert.That(took, Is.EqualTo(TimeSpan.FromMilliseconds(700)));
            Assert.That(world.GrantQueriesTo(slow), Is.EqualTo(2));
        });
    });

    [Test]
    public void DirectCallToASilentPeer_FailsWithinTheCallsOwnTimeout_NotAfterTheGrantQuerysTimeout_MarkedNotDelivered() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var fake = await world.ProviderAsync(Silence.NeverAnswers);
        var client = await world.ClientAsync(prefer: null);

        // A gateway calling one processor, say: it must be left time to try another within its own timeout.
        var (error, took) = await world.TimedFailureAsync(() => client.RequestAsync(fake.Node.PeerId, Method, ReadOnlyMemory<byte>.Empty,
            new RpcCallOptions { Timeout = CallTimeout }, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable), error.Message);
            Assert.That(error.NotDelivered, Is.True, "nothing of the call was sent, so another peer may be tried");
            Assert.That(took, Is.EqualTo(CallTimeout / 2), "the grant query gets half of what is left of the call's deadline");
            Assert.That(fake.Requests, Is.Zero);
        });
    });

    [Test]
    public void ProviderDownWhenFirstAsked_IsCalledSoonAfterItComesBack_NotACachePeriodLater() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var returning = await world.ProviderAsync(Silence.DropsPackets);
        var client = await world.ClientAsync(prefer: null);
        var options = new RpcCallOptions { Timeout = TimeSpan.FromSeconds(4) };

        var (whileDown, _) = await world.TimedFailureAsync(() => client.RequestTopicAsync(Topic, Method, ReadOnlyMemory<byte>.Empty, options, CancellationToken.None));
        world.Heal();
        // Well within the cache period (30 s), which is how long its failed grant query kept it out.
        await Task.Delay(TimeSpan.FromSeconds(5), sim.Clock);
        var (back, _) = await world.TimedAsync(() => client.RequestTopicAsync(Topic, Method, ReadOnlyMemory<byte>.Empty, options, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(whileDown.Code, Is.EqualTo(RpcStatusCode.Unavailable), whileDown.Message);
            Assert.That(Text(back), Is.EqualTo(returning.Name));
            Assert.That(world.GrantQueriesTo(returning), Is.EqualTo(2));
        });
    });

    [Test]
    public void ProviderDownWhenManyCallsAskedItAtOnce_IsCalledSoonAfterItComesBack_NotACachePeriodLater() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var returning = await world.ProviderAsync(Silence.DropsPackets);
        var client = await world.ClientAsync(prefer: null);
        var options = new RpcCallOptions { Timeout = TimeSpan.FromSeconds(4) };
        const int calls = 20;

        // Twenty calls at once while it is down: each asks it for its grant (they are not merged), and each query fails.
        var whileDown = await Task.WhenAll(Enumerable.Range(0, calls).Select(_ =>
            world.TimedFailureAsync(() => client.RequestTopicAsync(Topic, Method, ReadOnlyMemory<byte>.Empty, options, CancellationToken.None))));
        var queriesWhileDown = world.GrantQueriesTo(returning);
        world.Heal();
        // Well within the cache period (30 s), which is how long twenty failures "in a row" kept it out.
        await Task.Delay(TimeSpan.FromSeconds(5), sim.Clock);
        var (back, _) = await world.TimedAsync(() => client.RequestTopicAsync(Topic, Method, ReadOnlyMemory<byte>.Empty, options, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(whileDown.Select(f => f.Error.Code), Is.All.EqualTo(RpcStatusCode.Unavailable));
            Assert.That(queriesWhileDown, Is.EqualTo(calls), "every call asked it (not vacuous)");
            Assert.That(Text(back), Is.EqualTo(returning.Name));
            Assert.That(world.GrantQueriesTo(returning), Is.EqualTo(calls + 1));
        });
    });

    [Test]
    public void DirectCallToAPeerThatPresentsItsGrantSlowlyThenHangs_EndsByTheCallsOwnTimeout_NotTheTimeoutAgainAfterTheQuery() =>
        SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var hanging = await world.ProviderAsync(Silence.AnswersAfter700Ms, hangs: true);
        var client = await world.ClientAsync(prefer: null);
        var options = new RpcCallOptions { Timeout = CallTimeout };

        var (error, took) = await world.TimedFailureAsync(() =>
            client.RequestAsync(hanging.Node.PeerId, Method, ReadOnlyMemory<byte>.Empty, options, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(error.Code, Is.EqualTo(RpcStatusCode.DeadlineExceeded), error.Message);
            Assert.That(took, Is.EqualTo(CallTimeout), "the grant query (0.7 s) and the call share the call's timeout");
            Assert.That(hanging.Requests, Is.EqualTo(1), "its grant was accepted and the call sent (not vacuous)");
        });
    });

    [Test]
    public void DirectCallWhoseDeadlineHasPassed_FailsDeadlineExceeded_NotDelivered_WithoutAskingThePeer() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var peer = await world.ProviderAsync(Silence.None);
        var client = await world.ClientAsync(prefer: null);

        // A gateway forwarding a call whose caller's budget is spent, say.
        var (error, took) = await world.TimedFailureAsync(() => client.RequestAsync(peer.Node.PeerId, Method, ReadOnlyMemory<byte>.Empty,
            new RpcCallOptions { Deadline = sim.Clock.GetUtcNow() }, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(error.Code, Is.EqualTo(RpcStatusCode.DeadlineExceeded), error.Message);
            Assert.That(error.NotDelivered, Is.True);
            Assert.That(took, Is.EqualTo(TimeSpan.Zero));
            Assert.That(world.GrantQueriesTo(peer), Is.Zero, "no grant query with no time for it");
            Assert.That(peer.Requests, Is.Zero);
        });
    });

    private static string Text(byte[] bytes) => System.Text.Encoding.UTF8.GetString(bytes);

    /// <summary>How a provider of the topic treats the grant query.</summary>
    public enum Silence
    {
        /// <summary>Answers it with its grant: a real provider.</summary>
        None,

        /// <summary>Receives it and never answers.</summary>
        NeverAnswers,

        /// <summary>Never receives it: the link to it drops every packet, as to a host that is down.</summary>
        DropsPackets,

        /// <summary>Answers it with its grant, 700 ms after it arrived.</summary>
        AnswersAfter700Ms,
    }

    /// <summary>Cluster, RPC twin, mock DHT and the providers of <see cref="Topic"/>.</summary>
    private sealed class World(SimulationExecutor sim)
    {
        private readonly Random _identities = sim.CreateRandom("trusted-topic-calls", "identity");
        private readonly ClusterKey _cluster = new(KeyPair.FromRandom(sim.CreateRandom("trusted-topic-calls", "cluster")));
        private readonly InMemoryRpcNetwork _network = new(sim.Clock);
        private readonly MockDhtRegistry _dht = new(sim.Clock, sim.Seed);
        private readonly List<Provider> _providers = [];

        /// <summary>Grant queries the client sent, by callee.</summary>
        public Dictionary<PeerId, int> GrantQueries { get; } = [];

        public int GrantQueriesTo(Provider provider) => GrantQueries.GetValueOrDefault(provider.Node.PeerId);

        /// <param name="hangs">Receives the calls of <see cref="Method"/> and never answers them.</param>
        public async Task<Provider> ProviderAsync(Silence silence, bool hangs = false)
        {
            var key = KeyPair.FromRandom(_identities);
            var dht = _dht.CreateNode(key.PeerId, []);
            var node = _network.CreateNode(key.PeerId, discovery: dht);
            var now = sim.Clock.GetUtcNow();
            var provider = new Provider(node, $"provider {_providers.Count}", silence);
            var grant = _cluster.Issue(key.PeerId, GrantRole.Gateway, now - TimeSpan.FromHours(1), now + TimeSpan.FromDays(1), (ulong)_providers.Count + 1);
            node.Respond(GrantExchange.Method, async (_, context) =>
            {
                if (silence == Silence.NeverAnswers) await new TaskCompletionSource().Task.WaitOrCancelAsync(context.CancellationToken);
                if (silence == Silence.AnswersAfter700Ms) await Task.Delay(TimeSpan.FromMilliseconds(700), sim.Clock, context.CancellationToken);
                return grant.ToBytes();
            });
            node.Respond(Method, async (_, context) =>
            {
                provider.Requests++;
                if (hangs) await new TaskCompletionSource().Task.WaitOrCancelAsync(context.CancellationToken);
                return System.Text.Encoding.UTF8.GetBytes(provider.Name);
            });
            await dht.AnnounceAsync(Topic, CancellationToken.None);
            _providers.Add(provider);
            return provider;
        }

        /// <summary>A client whose balancer's first choice is <paramref name="prefer"/> when it has a choice.</summary>
        public async Task<TrustedRpcClient> ClientAsync(PeerId? prefer)
        {
            var key = KeyPair.FromRandom(_identities);
            var dht = _dht.CreateNode(key.PeerId, []);
            var order = (await dht.LookupAsync(Topic, CancellationToken.None)).Select(p => p.PeerId).ToList();
            var random = prefer is null ? new Random(sim.Seed) : new PickRandom(order.IndexOf(prefer));
            var node = _network.CreateNode(key.PeerId, new RpcOptions { Random = random }, dht);
            foreach (var provider in _providers.Where(p => p.Silence == Silence.DropsPackets)) _network.PartitionOneWay(key.PeerId, provider.Node.PeerId);
            return new TrustedRpcClient(new CountingClient(node, this), new GrantVerifier(_cluster.Id, sim.Clock),
                method => method.StartsWith("gateway.", StringComparison.Ordinal) ? GrantRole.Gateway : null, ownGrant: null);
        }

        /// <summary>Every link works again: a provider that dropped packets is back.</summary>
        public void Heal() => _network.Heal();

        public async Task<(T Result, TimeSpan Took)> TimedAsync<T>(Func<Task<T>> call)
        {
            var started = sim.Clock.GetTimestamp();
            var result = await call();
            return (result, sim.Clock.GetElapsedTime(started));
        }

        public async Task<(RpcException Error, TimeSpan Took)> TimedFailureAsync<T>(Func<Task<T>> call)
        {
            var started = sim.Clock.GetTimestamp();
            try
            {
                await call();
            }
            catch (RpcException e)
            {
                return (e, sim.Clock.GetElapsedTime(started));
            }
            Assert.Fail("the call succeeded");
            throw new InvalidOperationException();
        }
    }

    public sealed class Provider(InMemoryRpcNode node, string name, Silence silence)
    {
        public InMemoryRpcNode Node { get; } = node;
        public string Name { get; } = name;
        public Silence Silence { get; } = silence;
        public int Requests { get; set; }
    }

    /// <summary>The client's node, counting the grant queries sent through it.</summary>
    private sealed class CountingClient(IRpcClient inner, World world) : IRpcClient
    {
        public Task<byte[]> RequestAsync(PeerId peer, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options, CancellationToken cancellationToken)
        {
            if (method == GrantExchange.Method) world.GrantQueries[peer] = world.GrantQueries.GetValueOrDefault(peer) + 1;
            return inner.RequestAsync(peer, method, request, options, cancellationToken);
        }

        public IAsyncEnumerable<byte[]> RequestStreamAsync(PeerId peer, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options,
            CancellationToken cancellationToken) => inner.RequestStreamAsync(peer, method, request, options, cancellationToken);

        public Task<byte[]> RequestTopicAsync(string topic, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options, CancellationToken cancellationToken) =>
            inner.RequestTopicAsync(topic, method, request, options, cancellationToken);

        public IAsyncEnumerable<byte[]> RequestTopicStreamAsync(string topic, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options,
            CancellationToken cancellationToken) => inner.RequestTopicStreamAsync(topic, method, request, options, cancellationToken);

        public Task<IReadOnlyList<RpcPeerResult>> RequestAllAsync(string topic, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options,
            CancellationToken cancellationToken) => inner.RequestAllAsync(topic, method, request, options, cancellationToken);
    }

    /// <summary>The balancer's first random pick is <c>index</c> (so it is one of the two compared, and wins a tie); the second the next one.</summary>
    private sealed class PickRandom(int index) : Random(0)
    {
        private bool _first = true;

        public override int Next(int maxValue)
        {
            var pick = _first ? Math.Min(index, maxValue - 1) : 0;
            _first = !_first;
            return pick;
        }
    }
}
