using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Identify;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Protocols;

/// <summary>
/// identify push (<c>/ipfs/id/push/1.0.0</c>): a connected peer learns our new protocols and addresses without
/// reconnecting, and what a peer pushes is checked as its identify answer is. On the simulation executor, so "after
/// the push" is the point where nothing is left to run.
/// </summary>
[TestFixture]
public sealed class IdentifyPushTests
{
    private const string LateProtocol = "/test/late/1.0.0";

    private static CancellationToken Token => CancellationToken.None;


    /// <summary>Two started hosts, <c>a</c> connected to <c>b</c> and both identified, handed to <paramref name="test"/> and disposed after it.</summary>
    private static void WithPair(Func<SimulationExecutor, InMemoryNetwork, P2PHost, P2PHost, Task> test) => SimulationTest.Run(async sim =>
    {
        var network = new InMemoryNetwork(sim.Clock, sim.Seed);
        await using var a = await sim.StartHostAsync(network, "a");
        await using var b = await sim.StartHostAsync(network, "b");
        var (outbound, _) = await HostConnections.ConnectAsync(a, b, Token, identify: true);
        await a.IdentifyAsync(outbound, Token);
        await test(sim, network, a, b);
    });

    [Test]
    public void AProtocolHandledAfterConnecting_ReachesTheConnectedPeer_AndSoDoesItsRemoval() => WithPair(async (sim, _, a, b) =>
    {
        Assert.That(a.PeerStore.GetProtocols(b.PeerId), Does.Contain(IdentifyProtocol.PushProtocolId), "hosts take identify push");
        Assert.That(a.PeerStore.GetProtocols(b.PeerId), Does.Not.Contain(LateProtocol));

        b.Handle(LateProtocol, (_, _) => Task.CompletedTask);
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(a.PeerStore.GetProtocols(b.PeerId), Does.Contain(LateProtocol), "pushed: the connection was not reopened");

        b.Unhandle(LateProtocol);
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(a.PeerStore.GetProtocols(b.PeerId), Does.Not.Contain(LateProtocol));
        Assert.That(a.GetConnection(b.PeerId), Is.Not.Null);
    });

    [Test]
    public void ChangesMadeTogether_GoInOnePush() => WithPair(async (sim, _, a, b) =>
    {
        var before = b.IdentifyPushRounds;
        for (var i = 0; i < 5; i++) b.Handle($"{LateProtocol}/{i}", (_, _) => Task.CompletedTask);
        await sim.Clock.RunUntilIdleAsync();

        Assert.That(b.IdentifyPushRounds - before, Is.EqualTo(1));
        Assert.That(a.PeerStore.GetProtocols(b.PeerId), Does.Contain($"{LateProtocol}/4"));
    });

    [Test]
    public void ANewListenAddress_ReachesTheConnectedPeer() => SimulationTest.Run(async sim =>
    {
        // b dials before it listens (as a node behind a NAT does before its relay reservation gives it an address).
        var network = new InMemoryNetwork(sim.Clock, sim.Seed);
        await using var a = await sim.StartHostAsync(network, "a");
        await using var b = new P2PHost(sim.HostOptionsFor(network, "b"));
        var (outbound, _) = await HostConnections.ConnectAsync(b, a, Token, identify: true);
        await b.IdentifyAsync(outbound, Token);
        Assert.That(a.PeerStore.GetAddresses(b.PeerId), Does.Not.Contain(InMemoryNetwork.AddressOf("b")));

        await b.StartAsync([InMemoryNetwork.AddressOf("b")], Token);
        await sim.Clock.RunUntilIdleAsync();

        Assert.That(a.PeerStore.GetAddresses(b.PeerId), Does.Contain(InMemoryNetwork.AddressOf("b")));
    });

    [Test]
    public void AnAddressThePeerStopsListing_IsDropped_WhileOnesItNeverListedStay() => WithPair(async (sim, _, a, b) =>
    {
        var circuit = Multiaddress.Parse($"/ip4/203.0.113.5/tcp/4001/p2p/{a.PeerId}/p2p-circuit");
        var named = Multiaddress.Parse("/ip4/203.0.113.9/tcp/4001");
        a.PeerStore.AddAddresses(b.PeerId, [named]); // a DHT reply's claim: b never listed it
        await PushAsync(sim, a, b, new IdentifyInfo(b.Identity.PublicKey, [InMemoryNetwork.AddressOf("b"), circuit], [LateProtocol], null, "ipfs/0.1.0", "b/1.0"));
        Assert.That(a.PeerStore.GetAddresses(b.PeerId), Does.Contain(circuit));

        // b gave up its relay reservation; the push names its addresses and nothing else.
        await PushAsync(sim, a, b, new IdentifyInfo(b.Identity.PublicKey, [InMemoryNetwork.AddressOf("b")], [], null, "", ""));

        Assert.That(a.PeerStore.GetAddresses(b.PeerId), Is.EquivalentTo(new[] { InMemoryNetwork.AddressOf("b"), named }));
        Assert.That(a.PeerStore.GetProtocols(b.PeerId), Is.EqualTo(new[] { LateProtocol }), "a push without protocols keeps them");
        Assert.That(a.PeerStore.GetAgentVersion(b.PeerId), Is.EqualTo("b/1.0"), "and one without an agent version keeps it");
    });

    [Test]
    public void APushOfOnlyANewAgentVersion_KeepsTheAddressesAndProtocols() => WithPair(async (sim, _, a, b) =>
    {
        var protocols = a.PeerStore.GetProtocols(b.PeerId).ToArray();
        var addresses = a.PeerStore.GetAddresses(b.PeerId).ToArray();

        await PushAsync(sim, a, b, new IdentifyInfo(b.Identity.PublicKey, [], [], null, "", "b/2.0"));

        Assert.That(a.PeerStore.GetAgentVersion(b.PeerId), Is.EqualTo("b/2.0"));
        Assert.That(a.PeerStore.GetProtocols(b.PeerId), Is.EqualTo(protocols));
        Assert.That(a.PeerStore.GetAddresses(b.PeerId), Is.EqualTo(addresses));
    });

    /// <summary>Sends <paramref name="info"/> from <paramref name="b"/> to <paramref name="a"/> as a push of its own making, and runs until it is taken.</summary>
    private static async Task PushAsync(SimulationExecutor sim, P2PHost a, P2PHost b, IdentifyInfo info)
    {
        await using (var stream = await b.OpenStreamAsync(a.PeerId, IdentifyProtocol.PushProtocolId, Token))
            await IdentifyProtocol.WriteAsync(stream, info, Token);
        await sim.Clock.RunUntilIdleAsync();
    }

    [Test]
    public void APeerThatBecomesADhtServerAfterConnecting_EntersTheRoutingTable() => WithPair(async (sim, _, a, b) =>
    {
        // js-libp2p's kad-dht in its automatic mode starts as a client and serves once it finds itself reachable.
        await using var dht = new KademliaDht(a, new KademliaDhtOptions { TimeProvider = sim.Clock });
        await dht.StartAsync(Token);
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(dht.RoutingTable.Contains(b.PeerId), Is.False);

        b.Handle(dht.Options.ProtocolId, (_, _) => Task.CompletedTask);
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(dht.RoutingTable.Contains(b.PeerId), Is.True);

        b.Unhandle(dht.Options.ProtocolId);
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(dht.RoutingTable.Contains(b.PeerId), Is.False, "a peer that stopped serving kad leaves the table");
    });

    [Test]
    public void APushCarryingAnotherPeersKey_IsRefused_AndTheConnectionKeepsServing() => WithPair(async (sim, _, a, b) =>
    {
        var other = KeyPair.FromRandom(sim.CreateRandom("identity", "other"));
        var forged = new IdentifyInfo(other.PublicKey, [], [LateProtocol], null, "ipfs/0.1.0", "forged/1.0");

        await PushAsync(sim, a, b, forged);

        Assert.That(a.PeerStore.GetProtocols(b.PeerId), Does.Not.Contain(LateProtocol));
        Assert.That(a.PeerStore.GetAgentVersion(b.PeerId), Is.Not.EqualTo("forged/1.0"));
        Assert.That(await b.PingAsync(a.PeerId, Token), Is.GreaterThanOrEqualTo(TimeSpan.Zero), "the peer is still served");
    });

    [TestCase(0, TestName = "APush_ThatIsEmpty_ChangesNothing")]
    [TestCase(3, TestName = "APush_TruncatedInItsLength_ChangesNothing")]
    [TestCase(64 * 1024 + 1, TestName = "APush_OverTheLimit_ChangesNothing")]
    public void AMalformedPush_ChangesNothing_AndTheConnectionKeepsServing(int declaredLength) => WithPair(async (sim, _, a, b) =>
    {
        var protocolsBefore = a.PeerStore.GetProtocols(b.PeerId).ToArray();
        await using (var stream = await b.OpenStreamAsync(a.PeerId, IdentifyProtocol.PushProtocolId, Token))
        {
            if (declaredLength > 0)
            {
                // A varint length, then fewer bytes than it declares.
                var prefix = new byte[5];
                var n = Varint.Write(prefix, (ulong)declaredLength);
                await stream.WriteAsync(prefix.AsMemory(0, n), Token);
                await stream.WriteAsync(new byte[] { 0x0a, 0x01 }, Token);
            }
        }
        await sim.Clock.RunUntilIdleAsync();

        Assert.That(a.PeerStore.GetProtocols(b.PeerId), Is.EqualTo(protocolsBefore));
        Assert.That(await b.PingAsync(a.PeerId, Token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
    });

    [Test]
    public void ASecondPushWhileOneIsRead_IsReset_AndTheFirstStillCounts() => WithPair(async (sim, _, a, b) =>
    {
        var info = new IdentifyInfo(b.Identity.PublicKey, [], [LateProtocol], null, "ipfs/0.1.0", "pushed/1.0");
        var message = new MemoryStream();
        await IdentifyProtocol.WriteAsync(message, info, Token);
        var bytes = message.ToArray();

        var first = await b.OpenStreamAsync(a.PeerId, IdentifyProtocol.PushProtocolId, Token);
        await first.WriteAsync(bytes.AsMemory(0, 4), Token);
        await sim.Clock.RunUntilIdleAsync();
        // Caught by hand: NUnit's async Throws blocks on the delegate, which would stop the simulation's one thread.
        Exception? refused = null;
        try
        {
            await using var second = await b.OpenStreamAsync(a.PeerId, IdentifyProtocol.PushProtocolId, Token);
            await second.WriteAsync(bytes, Token);
            var read = await second.ReadAsync(new byte[1], Token);
            Assert.Fail($"the second push was read ({read} bytes back)");
        }
        catch (YamuxStreamResetException e)
        {
            refused = e;
        }

        Assert.That(refused, Is.Not.Null, "one push per connection is read at a time");

        await using (first)
            await first.WriteAsync(bytes.AsMemory(4), Token);
        await sim.Clock.RunUntilIdleAsync();
        Assert.That(a.PeerStore.GetAgentVersion(b.PeerId), Is.EqualTo("pushed/1.0"));
        Assert.That(a.PeerStore.GetProtocols(b.PeerId), Is.EqualTo(new[] { LateProtocol }), "a push replaces the protocols the peer listed");
    });
}
