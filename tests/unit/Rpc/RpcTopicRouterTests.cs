using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Rpc;

/// <summary>
/// The topic router beyond the conformance suite, on the RPC twin and the mock DHT in virtual time:
/// one deadline for the whole call, the provider lookup and callee checks included; when its final error
/// says the call reached no provider; how a provider with no latency sample yet compares with measured ones,
/// and one whose calls time out with working ones.
/// </summary>
[TestFixture]
public sealed class RpcTopicRouterTests
{
    private const string Topic = "p2pinference/router";
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(2);

    [Test]
    public void CalleeCheckThatNeverEnds_TheCallFailsWithDeadlineExceeded_AtItsDeadline() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        await world.ProviderAsync("p");
        var client = await world.ClientAsync();
        var options = new RpcCallOptions { Timeout = CallTimeout, CalleeCheck = NeverEnds };

        var (unary, unaryTook) = await world.TimedFailureAsync(() => client.RequestTopicAsync(Topic, "who", Array.Empty<byte>(), options, CancellationToken.None));
        var (stream, streamTook) = await world.TimedFailureAsync(async () =>
        {
            await foreach (var _ in client.RequestTopicStreamAsync(Topic, "who", Array.Empty<byte>(), options, CancellationToken.None))
            {
            }
        });

        Assert.Multiple(() =>
        {
            Assert.That(unary.Code, Is.EqualTo(RpcStatusCode.DeadlineExceeded), unary.Message);
            Assert.That(unaryTook, Is.EqualTo(CallTimeout));
            Assert.That(stream.Code, Is.EqualTo(RpcStatusCode.DeadlineExceeded), stream.Message);
            Assert.That(streamTook, Is.EqualTo(CallTimeout));
        });
    });

    [Test]
    public void CalleeCheckThatNeverEnds_RequestAll_ReportsTheProviderAsPastTheDeadline_AtTheDeadline() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var provider = await world.ProviderAsync("p");
        var client = await world.ClientAsync();

        var (results, took) = await world.TimedAsync(() => client.RequestAllAsync(Topic, "who", Array.Empty<byte>(),
            new RpcCallOptions { Timeout = CallTimeout, CalleeCheck = NeverEnds }, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(took, Is.EqualTo(CallTimeout));
            Assert.That(results.Select(r => (r.Peer, r.Error?.Code)), Is.EqualTo(new[] { (provider.PeerId, (RpcStatusCode?)RpcStatusCode.DeadlineExceeded) }));
        });
    });

    [Test]
    public void LookupSlowerThanTheDeadline_TheCallFailsWithDeadlineExceeded_AtItsDeadline() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        await world.ProviderAsync("p");
        var client = await world.ClientAsync();
        world.Dht.LookupDelay = TimeSpan.FromSeconds(10);

        var (error, took) = await world.TimedFailureAsync(() => client.RequestTopicAsync(Topic, "who", Array.Empty<byte>(),
            new RpcCallOptions { Timeout = CallTimeout }, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(error.Code, Is.EqualTo(RpcStatusCode.DeadlineExceeded), error.Message);
            Assert.That(took, Is.EqualTo(CallTimeout));
        });
    });

    [Test]
    public void UnmeasuredProvider_CostsTheMedianOfTheMeasuredOnes_NotTheLeast() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var fast = await world.ProviderAsync("fast");
        var slow = await world.ProviderAsync("slow");
        var fresh = await world.ProviderAsync("fresh");
        var random = new PairRandom();
        var client = await world.ClientAsync(random);
        world.Network.Link(client.PeerId, fast.PeerId).Latency = TimeSpan.FromMilliseconds(10);
        world.Network.Link(client.PeerId, slow.PeerId).Latency = TimeSpan.FromMilliseconds(100);
        world.Network.Link(client.PeerId, fresh.PeerId).Latency = TimeSpan.FromMilliseconds(10);
        var order = await world.OrderAsync();

        async Task<string> CallChoosingBetween(InMemoryRpcNode a, InMemoryRpcNode b)
        {
            random.Compare(order.IndexOf(a.PeerId), order.IndexOf(b.PeerId));
            return System.Text.Encoding.UTF8.GetString(await client.RequestTopicAsync(Topic, "who", Array.Empty<byte>(), null, CancellationToken.None));
        }

        // Both measured first (a tie between two unmeasured goes to the first compared).
        await CallChoosingBetween(fast, slow);
        await CallChoosingBetween(slow, fresh);
        var againstTheFast = await CallChoosingBetween(fast, fresh);
        var againstTheSlow = await CallChoosingBetween(slow, fresh);

        Assert.Multiple(() =>
        {
            Assert.That(againstTheFast, Is.EqualTo("fast"), "an unmeasured provider does not beat a measured one better than the median");
            Assert.That(againstTheSlow, Is.EqualTo("fresh"), "nor is it starved: it beats one worse than the median");
        });
    });

    [Test]
    public void EveryProviderRefusedBeforeAnythingReachedIt_TheCallsErrorIsMarkedNotDelivered() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        await world.ProviderAsync("a", RefusesUnread);
        await world.ProviderAsync("b", RefusesUnread);
        var client = await world.ClientAsync();

        // Each provider fails the callee check (a grant check, say), or turns the call away unread (draining): a caller
        // such as a client may then send even a call that is not idempotent elsewhere, as it may after one such refusal.
        var (checkedOut, _) = await world.TimedFailureAsync(() => client.RequestTopicAsync(Topic, "who", Array.Empty<byte>(),
            new RpcCallOptions { CalleeCheck = FailsTheCheck }, CancellationToken.None));
        var (turnedAway, _) = await world.TimedFailureAsync(() => client.RequestTopicAsync(Topic, "who", Array.Empty<byte>(),
            null, CancellationToken.None));

        Assert.Multiple(() =>
        {
            Assert.That(checkedOut.Code, Is.EqualTo(RpcStatusCode.Unavailable), checkedOut.Message);
            Assert.That(checkedOut.NotDelivered, Is.True, "every provider failed the check: nothing was sent");
            Assert.That(turnedAway.Code, Is.EqualTo(RpcStatusCode.Unavailable), turnedAway.Message);
            Assert.That(turnedAway.Message, Does.Contain("draining"), "not vacuous: the providers were called");
            Assert.That(turnedAway.NotDelivered, Is.True, "every provider refused it unread");
        });
    });

    [Test]
    public void OneProviderMayHaveRunTheCall_TheCallsErrorIsNotMarkedNotDelivered() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        await world.ProviderAsync("refuses", RefusesUnread);
        await world.ProviderAsync("fails", (_, _) => throw new RpcException(RpcStatusCode.Unavailable, "lost its backend halfway"));
        var client = await world.ClientAsync();

        var (error, _) = await world.TimedFailureAsync(() => client.RequestTopicAsync(Topic, "who", Array.Empty<byte>(),
            new RpcCallOptions { Idempotent = true }, CancellationToken.None));

        Assert.That(error.NotDelivered, Is.False, error.Message);
    });

    [Test]
    public void ProviderThatHangs_OnceACallTimedOutOnIt_TheNextCallsGoToTheHealthyOne() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var hung = await world.ProviderAsync("hung", NeverAnswers);
        var healthy = await world.ProviderAsync("healthy");
        var random = new PairRandom();
        var client = await world.ClientAsync(random);
        var order = await world.OrderAsync();

        // Each call compares the two with the hung one first, so it wins any tie.
        Task<string> Call() => WhoAnswersAsync(client, random, order, hung, healthy);

        var first = await Call();
        var next = new[] { await Call(), await Call(), await Call() };

        Assert.Multiple(() =>
        {
            Assert.That(first, Is.EqualTo(nameof(RpcStatusCode.DeadlineExceeded)), "not vacuous: the first call went to the hung one");
            Assert.That(next, Is.All.EqualTo("healthy"));
        });
    });

    [Test]
    public void ProviderThatHungWhileRestarting_CompetesAgain_OnceItsLastFailureIsOlderThanTheFailureMemory() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var hanging = true;
        var restarted = await world.ProviderAsync("restarted", async (request, context) =>
        {
            if (hanging) return await NeverAnswers(request, context);
            return System.Text.Encoding.UTF8.GetBytes("restarted");
        });
        var healthy = await world.ProviderAsync("healthy");
        var random = new PairRandom();
        var client = await world.ClientAsync(random);
        var order = await world.OrderAsync();

        // Each call compares the two with the restarted one first, so it wins a tie.
        Task<string> Call() => WhoAnswersAsync(client, random, order, restarted, healthy);

        var whileHung = await Call();
        hanging = false;
        var rightAfter = await Call();
        await sim.Clock.AdvanceAsync(RpcTopicRouter.FailureMemory);
        var later = await Call();

        Assert.Multiple(() =>
        {
            Assert.That(whileHung, Is.EqualTo(nameof(RpcStatusCode.DeadlineExceeded)), "not vacuous: the call met the hung provider");
            Assert.That(rightAfter, Is.EqualTo("healthy"), "a recent failure is avoided");
            Assert.That(later, Is.EqualTo("restarted"), "an old failure no longer shuns a provider that works again");
        });
    });

    /// <summary>One "who" call with the balancer comparing <paramref name="first"/> (winning a tie) with <paramref name="second"/>: the answer, or the error's code.</summary>
    private static async Task<string> WhoAnswersAsync(InMemoryRpcNode client, PairRandom random, List<PeerId> order, InMemoryRpcNode first, InMemoryRpcNode second)
    {
        random.Compare(order.IndexOf(first.PeerId), order.IndexOf(second.PeerId));
        try
        {
            return System.Text.Encoding.UTF8.GetString(await client.RequestTopicAsync(Topic, "who", Array.Empty<byte>(),
                new RpcCallOptions { Timeout = CallTimeout }, CancellationToken.None));
        }
        catch (RpcException e)
        {
            return e.Code.ToString();
        }
    }

    private static async ValueTask<ReadOnlyMemory<byte>> NeverAnswers(ReadOnlyMemory<byte> request, RpcCallContext context)
    {
        await new TaskCompletionSource().Task.WaitOrCancelAsync(context.CancellationToken);
        throw new InvalidOperationException("unreachable: the wait ends only by cancellation");
    }

    private static ValueTask<ReadOnlyMemory<byte>> RefusesUnread(ReadOnlyMemory<byte> request, RpcCallContext context) =>
        throw RpcException.RefusedBeforeAnyWork(RpcStatusCode.Unavailable, "draining");

    private static ValueTask<RpcException?> FailsTheCheck(PeerId peer, CancellationToken cancellationToken) =>
        ValueTask.FromResult<RpcException?>(RpcException.Undelivered(RpcStatusCode.Unavailable, $"{peer} holds no grant"));

    private static async ValueTask<RpcException?> NeverEnds(PeerId peer, CancellationToken cancellationToken)
    {
        await new TaskCompletionSource().Task.WaitOrCancelAsync(cancellationToken);
        return null;
    }

    private sealed class World(SimulationExecutor sim)
    {
        private readonly Random _identities = sim.CreateRandom("topic-router-tests", "identity");
        private MockDht? _clientDht;

        public InMemoryRpcNetwork Network { get; } = new(sim.Clock);

        public MockDhtRegistry Dht { get; } = new(sim.Clock, sim.Seed);

        /// <summary>A provider of <see cref="Topic"/> answering "who" with its <paramref name="name"/>, or with <paramref name="handler"/>.</summary>
        public async Task<InMemoryRpcNode> ProviderAsync(string name, RpcHandler? handler = null)
        {
            var key = KeyPair.FromRandom(_identities);
            var dht = Dht.CreateNode(key.PeerId, []);
            var node = Network.CreateNode(key.PeerId, discovery: dht);
            node.Respond("who", handler ?? ((_, _) => ValueTask.FromResult<ReadOnlyMemory<byte>>(System.Text.Encoding.UTF8.GetBytes(name))));
            await dht.AnnounceAsync(Topic, CancellationToken.None);
            return node;
        }

        public Task<InMemoryRpcNode> ClientAsync(Random? random = null)
        {
            var key = KeyPair.FromRandom(_identities);
            _clientDht = Dht.CreateNode(key.PeerId, []);
            return Task.FromResult(Network.CreateNode(key.PeerId, new RpcOptions { Random = random ?? new Random(sim.Seed) }, _clientDht));
        }

        /// <summary>The providers in the order the client's lookups return them.</summary>
        public async Task<List<PeerId>> OrderAsync() =>
            (await _clientDht!.LookupAsync(Topic, CancellationToken.None)).Select(p => p.PeerId).ToList();

        public async Task<(T Result, TimeSpan Took)> TimedAsync<T>(Func<Task<T>> call)
        {
            var started = sim.Clock.GetTimestamp();
            var result = await call();
            return (result, sim.Clock.GetElapsedTime(started));
        }

        public async Task<(RpcException Error, TimeSpan Took)> TimedFailureAsync(Func<Task> call)
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

    /// <summary>Makes the balancer compare the providers at two given indexes (of the untried ones), the first one first.</summary>
    private sealed class PairRandom : Random
    {
        private readonly Queue<int> _picks = new();

        public PairRandom() : base(0)
        {
        }

        public void Compare(int first, int second)
        {
            _picks.Clear();
            _picks.Enqueue(first);
            // The router draws the second from the others, skipping the first's index.
            _picks.Enqueue(second > first ? second - 1 : second);
        }

        public override int Next(int maxValue) => _picks.Count > 0 ? _picks.Dequeue() : 0;
    }
}
