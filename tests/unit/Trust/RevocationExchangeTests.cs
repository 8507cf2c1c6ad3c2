using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;
using static P2PInference.Tests.Unit.Support.RpcTestCalls;

namespace P2PInference.Tests.Unit.Trust;

/// <summary>
/// The signed revocation list travels with grant checks: a caller that finds a peer's grant valid asks it for a newer
/// list, takes one the cluster key signed, and checks the grant again against it. On the RPC twin, in virtual time.
/// </summary>
[TestFixture]
public sealed class RevocationExchangeTests
{
    private const string Method = "gateway.who";

    [Test]
    public void APeerHoldingTheListThatRevokesIt_IsRefused_AndTheCallerKeepsTheList() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var gateway = world.Peer("gateway", GrantRole.Gateway, serial: 7);
        var list = world.Cluster.SignRevocations(new RevocationList([7], []), world.Now);
        Assert.That(gateway.Verifier.Adopt(list, out _), Is.EqualTo(RevocationListAdoption.Taken));
        var client = world.Client();

        var refused = await client.Trusted.CheckCalleeAsync(gateway.PeerId, GrantRole.Gateway, CancellationToken.None);

        Assert.That(refused?.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(refused?.Message, Does.Contain("revoked"));
        Assert.That(client.Trusted.Verifier.SignedRevocations?.Issued, Is.EqualTo(list.Issued), "the list it learned stays with it");
        Assert.That(gateway.Calls, Is.Zero, "nothing else was sent to it");
    });

    [Test]
    public void AListLearnedFromOnePeer_RevokesAnother_ThatWithholdsIt() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var honest = world.Peer("honest", GrantRole.Gateway, serial: 1);
        var revoked = world.Peer("revoked", GrantRole.Gateway, serial: 2, servesRevocations: false);
        Assert.That(honest.Verifier.Adopt(world.Cluster.SignRevocations(new RevocationList([2], []), world.Now), out _), Is.EqualTo(RevocationListAdoption.Taken));
        var client = world.Client();

        await client.Trusted.RequestAsync(honest.PeerId, Method, ReadOnlyMemory<byte>.Empty, null, CancellationToken.None);
        var refused = await ErrorOf(() => client.Trusted.RequestAsync(revoked.PeerId, Method, ReadOnlyMemory<byte>.Empty, null, CancellationToken.None));

        Assert.That(refused.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(refused.NotDelivered, Is.True);
        Assert.That(revoked.Calls, Is.Zero);
        Assert.That(honest.Calls, Is.EqualTo(1));
    });

    [Test]
    public void AListOfAnotherCluster_OrWithABrokenSignature_IsNotTaken_AndThePeerIsStillServed(
        [Values("other cluster", "broken signature", "garbage")] string kind) => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var gateway = world.Peer("gateway", GrantRole.Gateway, serial: 7, answer: kind switch
        {
            "other cluster" => new ClusterKey(KeyPair.FromRandom(sim.CreateRandom("other cluster"))).SignRevocations(new RevocationList([7], []), world.Now).Bytes.ToArray(),
            "broken signature" => Broken(world.Cluster.SignRevocations(new RevocationList([7], []), world.Now)),
            _ => [1, 2, 3],
        });
        var client = world.Client();

        var answer = await client.Trusted.RequestAsync(gateway.PeerId, Method, ReadOnlyMemory<byte>.Empty, null, CancellationToken.None);

        Assert.That(answer, Is.Not.Empty);
        Assert.That(client.Trusted.Verifier.SignedRevocations, Is.Null);
    });

    [Test]
    public void APeerWithoutAValidGrant_IsNeverAskedForRevocations_AndAnUpToDateCallerIsSentNothing() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var rogue = world.Peer("rogue", GrantRole.Gateway, serial: 3, grantCluster: new ClusterKey(KeyPair.FromRandom(sim.CreateRandom("rogue cluster"))));
        var gateway = world.Peer("gateway", GrantRole.Gateway, serial: 4);
        var list = world.Cluster.SignRevocations(new RevocationList([99], []), world.Now);
        gateway.Verifier.Adopt(list, out _);
        var client = world.Client();
        client.Trusted.Verifier.Adopt(list, out _);

        var refused = await client.Trusted.CheckCalleeAsync(rogue.PeerId, GrantRole.Gateway, CancellationToken.None);
        await client.Trusted.RequestAsync(gateway.PeerId, Method, ReadOnlyMemory<byte>.Empty, null, CancellationToken.None);

        Assert.That(refused, Is.Not.Null);
        Assert.That(rogue.RevocationQueries, Is.Zero, "a peer without a valid grant is asked for nothing but its grant");
        Assert.That(gateway.RevocationQueries, Is.EqualTo(1));
        Assert.That(gateway.RevocationAnswers, Is.EqualTo(new[] { 0 }), "the caller holds that list already: the answer is empty");
    });

    [Test]
    public void APeerThatDoesNotServeRevocations_IsServedAsBefore() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var gateway = world.Peer("old gateway", GrantRole.Gateway, serial: 5, servesRevocations: false);
        var client = world.Client();

        var answer = await client.Trusted.RequestAsync(gateway.PeerId, Method, ReadOnlyMemory<byte>.Empty, null, CancellationToken.None);

        Assert.That(answer, Is.Not.Empty);
        Assert.That(gateway.Calls, Is.EqualTo(1));
    });

    [Test]
    public void AGatewayHoldingANewerList_HandsItToTheProcessorItCalls_BeforeTheRequestIsServed() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var processor = world.Server("processor", GrantRole.Processor, callers: GrantRole.Gateway);
        var gateway = world.Peer("gateway", GrantRole.Gateway, serial: 8);
        var list = world.Cluster.SignRevocations(new RevocationList([99], []), world.Now);
        gateway.Verifier.Adopt(list, out _);
        var caller = world.Caller(gateway, GrantRole.Gateway, serial: 8, calls: GrantRole.Processor);

        var answer = await caller.RequestAsync(processor.PeerId, ProcessorMethod, ReadOnlyMemory<byte>.Empty, null, CancellationToken.None);

        Assert.That(answer, Is.Not.Empty);
        Assert.That(processor.Verifier.SignedRevocations?.Issued, Is.EqualTo(list.Issued), "a processor never asks gateways for their grants, yet learns the list");
        Assert.That(gateway.RevocationQueries, Is.EqualTo(1));
    });

    [Test]
    public void ACallerThatClaimsANewerListItDoesNotHandOn_IsAskedOnce_AndServed() => SimulationTest.Run(async sim =>
    {
        var world = new World(sim);
        var processor = world.Server("processor", GrantRole.Processor, callers: GrantRole.Gateway);
        var gateway = world.Peer("gateway", GrantRole.Gateway, serial: 8, answer: []);
        gateway.Verifier.Adopt(world.Cluster.SignRevocations(new RevocationList([99], []), world.Now), out _);
        var caller = world.Caller(gateway, GrantRole.Gateway, serial: 8, calls: GrantRole.Processor);

        for (var i = 0; i < 3; i++) await caller.RequestAsync(processor.PeerId, ProcessorMethod, ReadOnlyMemory<byte>.Empty, null, CancellationToken.None);

        Assert.That(gateway.RevocationQueries, Is.EqualTo(1), "once per claim, not once per request");
        Assert.That(processor.Verifier.SignedRevocations, Is.Null);
        Assert.That(processor.Calls, Is.EqualTo(3));
    });

    private const string ProcessorMethod = "processor.who";

    private static byte[] Broken(SignedRevocationList list)
    {
        var bytes = list.Bytes.ToArray();
        bytes[^1] ^= 0x01;
        return bytes;
    }

    /// <summary>A cluster, its peers on the RPC twin, and clients that check them.</summary>
    private sealed class World(SimulationExecutor sim)
    {
        private readonly InMemoryRpcNetwork _network = new(sim.Clock);
        private readonly Dictionary<PeerId, InMemoryRpcNode> _nodes = [];

        public ClusterKey Cluster { get; } = new(KeyPair.FromRandom(sim.CreateRandom("revocation-exchange", "cluster")));

        public DateTimeOffset Now => sim.Clock.GetUtcNow();

        /// <param name="answer">What it answers a revocation query with, instead of its verifier's list.</param>
        public Peer Peer(string name, GrantRole role, ulong serial, bool servesRevocations = true, byte[]? answer = null, ClusterKey? grantCluster = null)
        {
            var key = KeyPair.FromRandom(sim.CreateRandom("revocation-exchange", name));
            var node = _network.CreateNode(key.PeerId);
            _nodes[key.PeerId] = node;
            var grant = (grantCluster ?? Cluster).Issue(key.PeerId, role, Now - TimeSpan.FromHours(1), Now + TimeSpan.FromDays(1), serial);
            var peer = new Peer(key.PeerId, new GrantVerifier(Cluster.Id, sim.Clock));
            GrantExchange.Serve(node, grant);
            if (servesRevocations)
            {
                // The real answer, counted: the peer serves through a server that records what it sent.
                var counting = new CountingServer(node, peer);
                if (answer is null) RevocationExchange.Serve(counting, peer.Verifier);
                else counting.Respond(RevocationExchange.Method, (_, _) => ValueTask.FromResult<ReadOnlyMemory<byte>>(answer));
            }
            node.Respond(Method, (_, _) =>
            {
                peer.Calls++;
                return ValueTask.FromResult<ReadOnlyMemory<byte>>("ok"u8.ToArray());
            });
            return peer;
        }

        /// <summary>A worker that serves only callers holding <paramref name="callers"/>' grant, and catches up with the lists they claim.</summary>
        public Peer Server(string name, GrantRole role, GrantRole callers)
        {
            var key = KeyPair.FromRandom(sim.CreateRandom("revocation-exchange", name));
            var node = _network.CreateNode(key.PeerId);
            var peer = new Peer(key.PeerId, new GrantVerifier(Cluster.Id, sim.Clock));
            var grant = new HeldGrant(Cluster.Issue(key.PeerId, role, Now - TimeSpan.FromHours(1), Now + TimeSpan.FromDays(1), 1000));
            GrantExchange.Serve(node, grant);
            RevocationExchange.Serve(node, peer.Verifier);
            var own = new TrustedRpcClient(node, peer.Verifier, _ => null, grant);
            new TrustedRpcServer(node, peer.Verifier, callers, own).Respond(ProcessorMethod, (_, _) =>
            {
                peer.Calls++;
                return ValueTask.FromResult<ReadOnlyMemory<byte>>("ok"u8.ToArray());
            });
            return peer;
        }

        /// <summary><paramref name="peer"/>'s own client: it presents its grant and names its list with every request.</summary>
        public TrustedRpcClient Caller(Peer peer, GrantRole role, ulong serial, GrantRole calls)
        {
            var node = _nodes[peer.PeerId];
            var grant = new HeldGrant(Cluster.Issue(peer.PeerId, role, Now - TimeSpan.FromHours(1), Now + TimeSpan.FromDays(1), serial));
            return new TrustedRpcClient(node, peer.Verifier, m => m == ProcessorMethod ? calls : null, grant);
        }

        public Client Client()
        {
            var node = _network.CreateNode(KeyPair.FromRandom(sim.CreateRandom("revocation-exchange", "client")).PeerId);
            return new Client(new TrustedRpcClient(node, new GrantVerifier(Cluster.Id, sim.Clock), m => m == Method ? GrantRole.Gateway : null, ownGrant: null));
        }
    }

    private sealed class Peer(PeerId peerId, GrantVerifier verifier)
    {
        public PeerId PeerId { get; } = peerId;
        public GrantVerifier Verifier { get; } = verifier;
        public int Calls { get; set; }
        public int RevocationQueries { get; set; }
        public List<int> RevocationAnswers { get; } = [];
    }

    private sealed record Client(TrustedRpcClient Trusted);

    /// <summary>Serves through <paramref name="inner"/>, counting the revocation queries and the size of each answer.</summary>
    private sealed class CountingServer(IRpcServer inner, Peer peer) : IRpcServer
    {
        public IReadOnlySet<PeerId>? AllowedPeers
        {
            get => inner.AllowedPeers;
            set => inner.AllowedPeers = value;
        }

        public void Respond(string method, RpcHandler handler, RpcMethodOptions? options = null) =>
            inner.Respond(method, async (request, context) =>
            {
                peer.RevocationQueries++;
                var answer = await handler(request, context);
                peer.RevocationAnswers.Add(answer.Length);
                return answer;
            }, options);

        public void RespondStreaming(string method, RpcStreamingHandler handler, RpcMethodOptions? options = null) => inner.RespondStreaming(method, handler, options);

        public bool Unrespond(string method) => inner.Unrespond(method);
    }
}
