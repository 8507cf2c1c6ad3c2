using System.Net;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Dcutr;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Network.Nat;
using P2PInference.TestKit.Simulation;
using P2PInference.Tests.Unit.Protocols.Relay;

namespace P2PInference.Tests.Unit.Protocols.Dcutr;

/// <summary>
/// DCUtR on the in-memory network with its NAT models, on virtual time. As in the spec, A (alice)
/// reaches B (bob), who is behind a NAT and listens through a public relay; bob's service starts the
/// hole punch, alice's answers it.
/// </summary>
[TestFixture]
public sealed class DcutrSimulationTests
{
    private const string Echo = RelayTestWorld.Echo;
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(5);
    private static readonly Multiaddress CircuitSuffix = Multiaddress.Parse("/p2p-circuit");

    /// <summary>The relay simulations' world, with DCUtR on the peers that should run it.</summary>
    private sealed class World(SimulationExecutor sim) : IAsyncDisposable
    {
        private readonly RelayTestWorld _world = new(sim);

        public InMemoryNetwork Network => _world.Network;

        public async Task<P2PHost> RelayAsync() => (await _world.RelayAsync()).Host;

        /// <summary>A host with the circuit transport, its in-memory one, an echo handler and (unless told not to) DCUtR.</summary>
        public async Task<(P2PHost Host, CircuitRelayTransport Circuit, DcutrService? Dcutr)> PeerAsync(string name, bool dcutr = true, DcutrOptions? options = null)
        {
            var (host, circuit) = await _world.PeerAsync(name);
            return (host, circuit, dcutr ? _world.Own(new DcutrService(host, options)) : null);
        }

        public void Nat(string name, NatBehavior behavior, string address, params string[] nodes) => _world.Nat(name, behavior, address, nodes);

        public ValueTask DisposeAsync() => _world.DisposeAsync();
    }

    /// <summary>Bob listens through the relay; alice and bob each sit behind their NAT (null: in the open).</summary>
    private static async Task<Setup> SetUpAsync(SimulationExecutor sim, NatBehavior? aliceNat, NatBehavior? bobNat, bool aliceDcutr = true, bool bobDcutr = true,
        DcutrOptions? bobOptions = null)
    {
        var world = new World(sim);
        var relay = await world.RelayAsync();
        var (alice, _, aliceService) = await world.PeerAsync("alice", aliceDcutr);
        var (bob, bobCircuit, bobService) = await world.PeerAsync("bob", bobDcutr, bobOptions);
        if (aliceNat is not null) world.Nat("home", aliceNat, "198.51.100.20", "alice");
        if (bobNat is not null) world.Nat("office", bobNat, "203.0.113.30", "bob");
        await bob.StartAsync([relay.AdvertisedAddresses[0].Encapsulate(CircuitSuffix)], CancellationToken.None);
        Assert.That(bobCircuit.Reservations, Has.Count.EqualTo(1));
        return new Setup(world, relay, alice, aliceService, bob, bobService, CircuitAddress.For(relay.ListenAddresses[0], relay.PeerId, bob.PeerId));
    }

    private sealed record Setup(World World, P2PHost Relay, P2PHost Alice, DcutrService? AliceDcutr, P2PHost Bob, DcutrService? BobDcutr, Multiaddress BobViaRelay)
        : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => World.DisposeAsync();
    }

    private static async Task<byte[]> EchoAsync(P2PHost from, PeerId to, byte[] payload)
    {
        var stream = await from.OpenStreamAsync(to, Echo, CancellationToken.None);
        await using (stream)
        {
            await stream.WriteAsync(payload, CancellationToken.None);
            await stream.CompleteWritesAsync(CancellationToken.None);
            var received = new MemoryStream();
            await stream.CopyToOnContextAsync(received, CancellationToken.None);
            return received.ToArray();
        }
    }

    private static PeerConnection[] DirectBetween(P2PHost host, P2PHost peer) =>
        host.Connections.Where(c => c.RemotePeer == peer.PeerId && !c.IsRelayed && !c.IsClosed).ToArray();

    [TestCase(nameof(NatBehavior.PortRestrictedCone), nameof(NatBehavior.PortRestrictedCone))]
    [TestCase(nameof(NatBehavior.FullCone), nameof(NatBehavior.RestrictedCone))]
    [TestCase(nameof(NatBehavior.RestrictedCone), nameof(NatBehavior.PortRestrictedCone))]
    public void ConeNats_HolePunchSucceeds_AndStreamsMoveToTheDirectConnection(string aliceNat, string bobNat) => SimulationTest.Run(async sim =>
    {
        await using var setup = await SetUpAsync(sim, Preset(aliceNat), Preset(bobNat));
        var (alice, bob) = (setup.Alice, setup.Bob);
        var atAlice = setup.AliceDcutr!.WaitForOutcomeAsync(bob.PeerId, CancellationToken.None);
        var atBob = setup.BobDcutr!.WaitForOutcomeAsync(alice.PeerId, CancellationToken.None);

        var start = sim.Clock.Elapsed;
        var relayed = await alice.ConnectAsync(setup.BobViaRelay, CancellationToken.None);
        Assert.That(relayed.IsRelayed, Is.True);
        var aliceOutcome = await atAlice;
        var bobOutcome = await atBob;
        await TestContext.Out.WriteLineAsync($"relayed dial to direct connection: {sim.Clock.Elapsed - start} of virtual time");

        Assert.Multiple(() =>
        {
            Assert.That(aliceOutcome.IsDirect, Is.True, aliceOutcome.ToString());
            Assert.That(bobOutcome.IsDirect, Is.True, bobOutcome.ToString());
            Assert.That(bobOutcome.Unilateral, Is.False, "alice's advertised address is private");
            Assert.That(bobOutcome.Attempts, Is.EqualTo(1));
            Assert.That(bobOutcome.Address!.TcpHostPort()?.Host, Is.EqualTo("198.51.100.20"), "bob reached alice's NAT's public endpoint");
            Assert.That(aliceOutcome.Address!.TcpHostPort()?.Host, Is.EqualTo("203.0.113.30"));
            Assert.That(alice.GetConnection(bob.PeerId)!.IsRelayed, Is.False, "new streams go on the direct connection");
            Assert.That(bob.GetConnection(alice.PeerId)!.IsRelayed, Is.False);
        });
        Assert.That(await EchoAsync(alice, bob.PeerId, "direct"u8.ToArray()), Is.EqualTo("direct"u8.ToArray()));
        Assert.That(relayed.IsClosed, Is.False, "the relayed connection has its grace period");

        // The spec's migration: after the grace period the relayed connection closes and the direct one carries on.
        await sim.Clock.WaitUntilAsync(() => relayed.IsClosed, Patience);
        Assert.That(alice.Connections.Where(c => c.RemotePeer == bob.PeerId), Has.All.Matches<PeerConnection>(c => !c.IsRelayed));
        Assert.That(await EchoAsync(bob, alice.PeerId, "still"u8.ToArray()), Is.EqualTo("still"u8.ToArray()));
    });

    [Test]
    public void SimultaneousOpen_BothEndsAgreeOnTheRoles_AndKeepOneConnection() => SimulationTest.Run(async sim =>
    {
        await using var setup = await SetUpAsync(sim, NatBehavior.PortRestrictedCone, NatBehavior.PortRestrictedCone);
        var (alice, bob) = (setup.Alice, setup.Bob);
        var atBob = setup.BobDcutr!.WaitForOutcomeAsync(alice.PeerId, CancellationToken.None);
        var opened = setup.World.Network.ConnectionsOpened;

        await alice.ConnectAsync(setup.BobViaRelay, CancellationToken.None);
        await atBob;
        await sim.Clock.WaitUntilAsync(() => DirectBetween(alice, bob).Length == 1 && DirectBetween(bob, alice).Length == 1, Patience);
        await sim.Clock.AdvanceAsync(TimeSpan.FromSeconds(1));

        var aliceEnd = DirectBetween(alice, bob).Single();
        var bobEnd = DirectBetween(bob, alice).Single();
        Assert.Multiple(() =>
        {
            // Both dials completed as one TCP connection; bob's was upgraded as the responder, alice's as the initiator (as js and rust do).
            Assert.That(aliceEnd.Direction, Is.EqualTo(ConnectionDirection.Outbound), "alice (A) initiates");
            Assert.That(bobEnd.Direction, Is.EqualTo(ConnectionDirection.Inbound), "bob (B) responds");
            Assert.That(aliceEnd.RemoteAddress.TcpHostPort()?.Host, Is.EqualTo("203.0.113.30"));
            // Bob's connection to the relay predates the count; alice's to the relay and the punched one are all it adds.
            Assert.That(setup.World.Network.ConnectionsOpened - opened, Is.EqualTo(2), "alice-relay, and one direct for both dials");
        });
    });

    [Test]
    public void SymmetricNatsOnBothSides_FallBackToTheRelay_WhichStillWorks() => SimulationTest.Run(async sim =>
    {
        await using var setup = await SetUpAsync(sim, NatBehavior.Symmetric, NatBehavior.Symmetric);
        var (alice, bob) = (setup.Alice, setup.Bob);
        var atAlice = setup.AliceDcutr!.WaitForOutcomeAsync(bob.PeerId, CancellationToken.None);
        var atBob = setup.BobDcutr!.WaitForOutcomeAsync(alice.PeerId, CancellationToken.None);
        var start = sim.Clock.Elapsed;

        await alice.ConnectAsync(setup.BobViaRelay, CancellationToken.None);
        var bobOutcome = await atBob;
        var aliceOutcome = await atAlice;
        await TestContext.Out.WriteLineAsync($"relayed dial to giving up: {sim.Clock.Elapsed - start} of virtual time");

        Assert.Multiple(() =>
        {
            Assert.That(bobOutcome.IsDirect, Is.False);
            Assert.That(bobOutcome.Attempts, Is.EqualTo(3), "the spec's three attempts");
            Assert.That(bobOutcome.Reason, Does.Contain("attempt(s) failed"));
            Assert.That(bobOutcome.Error, Is.Null, "the exchange ran its course; only the dials failed");
            Assert.That(aliceOutcome.IsDirect, Is.False);
            Assert.That(sim.Clock.Elapsed - start, Is.LessThan(TimeSpan.FromMinutes(1)), "bounded by three dial timeouts");
            Assert.That(alice.GetConnection(bob.PeerId)!.IsRelayed, Is.True);
            Assert.That(setup.BobDcutr.ActiveCount + setup.AliceDcutr.ActiveCount, Is.Zero);
        });
        Assert.That(await EchoAsync(alice, bob.PeerId, "relayed"u8.ToArray()), Is.EqualTo("relayed"u8.ToArray()));
    });

    [Test]
    public void PublicDialer_IsReachedByTheUnilateralUpgrade_WithoutTheExchange() => SimulationTest.Run(async sim =>
    {
        await using var setup = await SetUpAsync(sim, aliceNat: null, NatBehavior.PortRestrictedCone);
        var (alice, bob) = (setup.Alice, setup.Bob);
        var atBob = setup.BobDcutr!.WaitForOutcomeAsync(alice.PeerId, CancellationToken.None);
        var exchanges = 0;
        setup.AliceDcutr!.Completed += _ => exchanges++;

        await alice.ConnectAsync(setup.BobViaRelay, CancellationToken.None);
        // As `ping` and `identify` wait: alice runs no exchange, and must still hear that bob reached her directly.
        var atAlice = setup.AliceDcutr.WaitForOutcomeAsync(bob.PeerId, CancellationToken.None);
        var outcome = await atBob;
        var aliceOutcome = await atAlice.WaitAsync(Patience, sim.Clock);

        Assert.Multiple(() =>
        {
            Assert.That(outcome.IsDirect && outcome.Unilateral, Is.True, outcome.ToString());
            Assert.That(outcome.Attempts, Is.Zero);
            Assert.That(outcome.Address, Is.EqualTo(InMemoryNetwork.AddressOf("alice")));
            Assert.That(exchanges, Is.Zero, "alice never saw a /libp2p/dcutr stream");
            Assert.That(aliceOutcome.IsDirect, Is.True, aliceOutcome.ToString());
            Assert.That(alice.GetConnection(bob.PeerId), Is.SameAs(aliceOutcome.Connection));
        });
    });

    // The pinned seed under the random schedule cancelled alice's exchange (its connection closed)
    // before her read saw the reset; her outcome then said "stopped", as if her service had stopped.
    [TestCase(null)]
    [TestCase(1145612802)]
    public void RelayCrashMidProtocol_EndsBothSidesWithATypedOutcome_AndTheServicesServeOthers(int? randomSeed) => SimulationTest.Run(async sim =>
    {
        await using var setup = await SetUpAsync(sim, NatBehavior.Symmetric, NatBehavior.Symmetric);
        var (alice, bob) = (setup.Alice, setup.Bob);
        var atAlice = setup.AliceDcutr!.WaitForOutcomeAsync(bob.PeerId, CancellationToken.None);
        var atBob = setup.BobDcutr!.WaitForOutcomeAsync(alice.PeerId, CancellationToken.None);
        var relayed = await alice.ConnectAsync(setup.BobViaRelay, CancellationToken.None);

        // Alice answers CONNECT only inside the exchange: once she is in it, the relay goes.
        await sim.Clock.WaitUntilAsync(() => setup.AliceDcutr.ActiveCount == 1, Patience);
        setup.World.Network.Crash("relay");
        var bobOutcome = await atBob;
        var aliceOutcome = await atAlice;

        Assert.Multiple(() =>
        {
            Assert.That(bobOutcome.IsDirect, Is.False);
            Assert.That(aliceOutcome.IsDirect, Is.False);
            Assert.That(new[] { bobOutcome.Error, aliceOutcome.Error }, Has.All.InstanceOf<IOException>().Or.InstanceOf<TimeoutException>(),
                $"bob: {bobOutcome}; alice: {aliceOutcome}");
            Assert.That(relayed.IsClosed, Is.True);
            Assert.That(setup.BobDcutr.ActiveCount + setup.AliceDcutr.ActiveCount, Is.Zero);
        });
    }, randomSeed is null ? null : SimulationTest.Options(randomSeed) with { Strategy = ScheduleStrategy.Random });

    [Test]
    public void HolePunchesPastTheCap_AreRefused_AndThoseConnectionsStayRelayed() => SimulationTest.Run(async sim =>
    {
        await using var setup = await SetUpAsync(sim, NatBehavior.Symmetric, NatBehavior.Symmetric, bobOptions: new DcutrOptions { MaxConcurrentHolePunches = 1 });
        var (carol, _, _) = await setup.World.PeerAsync("carol");
        setup.World.Nat("cafe", NatBehavior.Symmetric, "203.0.113.40", "carol");
        var outcomes = new List<HolePunchOutcome>();
        setup.BobDcutr!.Completed += outcomes.Add;

        await setup.Alice.ConnectAsync(setup.BobViaRelay, CancellationToken.None);
        await carol.ConnectAsync(setup.BobViaRelay, CancellationToken.None);
        await sim.Clock.WaitUntilAsync(() => outcomes.Count == 2, Patience);

        Assert.Multiple(() =>
        {
            Assert.That(outcomes[0].Peer, Is.EqualTo(carol.PeerId), "carol's punch was refused at once");
            Assert.That(outcomes[0].Reason, Does.Contain("1 hole punches are already running"));
            Assert.That(outcomes[1].Peer, Is.EqualTo(setup.Alice.PeerId));
            Assert.That(outcomes[1].Attempts, Is.EqualTo(3), "alice's ran its course");
            Assert.That(setup.Bob.GetConnection(carol.PeerId)!.IsRelayed, Is.True);
        });
    });

    [Test]
    public void OnePeersManyStreams_TakeTwoResponderSlots_TheRestAreReset() => SimulationTest.Run(async sim =>
    {
        await using var setup = await SetUpAsync(sim, NatBehavior.PortRestrictedCone, NatBehavior.PortRestrictedCone, bobDcutr: false);
        var (alice, bob) = (setup.Alice, setup.Bob);
        await alice.ConnectAsync(setup.BobViaRelay, CancellationToken.None);
        await sim.Clock.WaitUntilAsync(() => bob.GetConnection(alice.PeerId) is not null, Patience);
        var relayed = bob.GetConnection(alice.PeerId)!;

        // A stream refused while its negotiation is read fails to open; one refused later ends on the next read.
        var streams = new List<Facilities.Net.Yamux.YamuxStream>();
        var ended = 0;
        for (var i = 0; i < 4; i++)
        {
            try
            {
                streams.Add((await relayed.OpenStreamAsync([HolePunchMessageCodec.ProtocolId], CancellationToken.None)).Stream);
            }
            catch (IOException)
            {
                ended++;
            }
        }
        await sim.Clock.WaitUntilAsync(() => setup.AliceDcutr!.ActiveCount == 2, Patience);
        foreach (var stream in streams.Skip(2))
        {
            try
            {
                if (await stream.ReadAsync(new byte[1], CancellationToken.None) == 0) ended++;
            }
            catch (IOException)
            {
                ended++;
            }
        }

        Assert.That(ended, Is.EqualTo(2), "the streams past two were refused at once");
        Assert.That(setup.AliceDcutr!.ActiveCount, Is.EqualTo(2), "the first two wait for their CONNECT, within the message timeout");
        await sim.Clock.WaitUntilAsync(() => setup.AliceDcutr.ActiveCount == 0, Patience);
        foreach (var stream in streams) stream.Reset();
    });

    /// <summary>What a peer that breaks the protocol writes on its /libp2p/dcutr stream.</summary>
    public enum Misbehaviour
    {
        Silent,
        Garbage,
        Oversized,
        Truncated,
        WrongType,
        UndefinedType,
    }

    private static readonly Dictionary<Misbehaviour, Type> ExpectedError = new()
    {
        [Misbehaviour.Silent] = typeof(TimeoutException),
        [Misbehaviour.Garbage] = typeof(MalformedMessageException),
        [Misbehaviour.Oversized] = typeof(MessageTooLargeException),
        [Misbehaviour.Truncated] = typeof(EndOfStreamException),
        [Misbehaviour.WrongType] = typeof(DcutrException),
        [Misbehaviour.UndefinedType] = typeof(DcutrException),
    };

    private static async Task MisbehaveAsync(Stream stream, Misbehaviour misbehaviour, CancellationToken cancellationToken)
    {
        byte[] bytes = misbehaviour switch
        {
            Misbehaviour.Silent => [],
            // A field tag whose varint never ends.
            Misbehaviour.Garbage => [3, 0xFF, 0xFF, 0xFF],
            Misbehaviour.Oversized => [.. Varint.Encode(HolePunchMessageCodec.MaxMessageLength + 1), .. new byte[32]],
            Misbehaviour.Truncated => [10, 0x08, 0x64],
            // SYNC (type 300) where a CONNECT is due.
            Misbehaviour.WrongType => [3, 0x08, 0xAC, 0x02],
            Misbehaviour.UndefinedType => [2, 0x08, 0x07],
            _ => throw new ArgumentOutOfRangeException(nameof(misbehaviour)),
        };
        await stream.WriteAsync(bytes, cancellationToken);
        if (misbehaviour == Misbehaviour.Silent)
        {
            // Holds the stream open and says nothing until the other side gives up.
            var buffer = new byte[256];
            while (await stream.ReadAsync(buffer, cancellationToken) > 0)
            {
            }
            return;
        }
        if (misbehaviour == Misbehaviour.Truncated) await ((Facilities.Net.Yamux.YamuxStream)stream).CompleteWritesAsync(cancellationToken);
    }

    [TestCaseSource(nameof(AllMisbehaviours))]
    public void RogueInitiator_GetsATypedError_Bounded_AndTheResponderServesTheNextPeer(Misbehaviour misbehaviour) => SimulationTest.Run(async sim =>
    {
        // Bob runs no DCUtR service: he opens the stream himself and breaks the protocol on it.
        await using var setup = await SetUpAsync(sim, NatBehavior.PortRestrictedCone, NatBehavior.PortRestrictedCone, bobDcutr: false);
        var (alice, bob) = (setup.Alice, setup.Bob);
        var atAlice = setup.AliceDcutr!.WaitForOutcomeAsync(bob.PeerId, CancellationToken.None);
        await alice.ConnectAsync(setup.BobViaRelay, CancellationToken.None);
        await sim.Clock.WaitUntilAsync(() => bob.GetConnection(alice.PeerId) is not null, Patience);
        var (stream, _) = await bob.GetConnection(alice.PeerId)!.OpenStreamAsync([HolePunchMessageCodec.ProtocolId], CancellationToken.None);
        using var stop = new CancellationTokenSource();
        var rogue = MisbehaveAsync(stream, misbehaviour, stop.Token);
        var start = sim.Clock.Elapsed;

        var outcome = await atAlice;
        stop.Cancel();
        await rogue.ObserveFailureAsync();

        Assert.Multiple(() =>
        {
            Assert.That(outcome.IsDirect, Is.False);
            Assert.That(outcome.Error, Is.InstanceOf(ExpectedError[misbehaviour]), outcome.ToString());
            Assert.That(sim.Clock.Elapsed - start, Is.LessThanOrEqualTo(new DcutrOptions().MessageTimeout + TimeSpan.FromSeconds(1)), "bounded by the message timeout");
            Assert.That(setup.AliceDcutr.ActiveCount, Is.Zero);
        });
        await AliceStillPunchesWithCarolAsync(setup);
    });

    [TestCaseSource(nameof(AllMisbehaviours))]
    public void RogueResponder_GetsATypedError_Bounded_AndTheInitiatorStaysRelayed(Misbehaviour misbehaviour) => SimulationTest.Run(async sim =>
    {
        // Alice runs no DCUtR service: her handler answers bob's CONNECT with the misbehaviour.
        await using var setup = await SetUpAsync(sim, NatBehavior.PortRestrictedCone, NatBehavior.PortRestrictedCone, aliceDcutr: false);
        var (alice, bob) = (setup.Alice, setup.Bob);
        alice.Handle(HolePunchMessageCodec.ProtocolId, async (context, ct) => await MisbehaveAsync(context.Stream, misbehaviour, ct));
        var atBob = setup.BobDcutr!.WaitForOutcomeAsync(alice.PeerId, CancellationToken.None);

        await alice.ConnectAsync(setup.BobViaRelay, CancellationToken.None);
        var outcome = await atBob;

        Assert.Multiple(() =>
        {
            Assert.That(outcome.IsDirect, Is.False);
            Assert.That(outcome.Error, Is.InstanceOf(ExpectedError[misbehaviour]), outcome.ToString());
            Assert.That(setup.BobDcutr.ActiveCount, Is.Zero);
            Assert.That(bob.GetConnection(alice.PeerId)!.IsRelayed, Is.True);
        });
        Assert.That(await EchoAsync(bob, alice.PeerId, "relayed"u8.ToArray()), Is.EqualTo("relayed"u8.ToArray()));
    });

    private static IEnumerable<Misbehaviour> AllMisbehaviours() => Enum.GetValues<Misbehaviour>();

    /// <summary>Carol, behind a cone NAT and listening through the relay, is reached by alice and hole-punched.</summary>
    private static async Task AliceStillPunchesWithCarolAsync(Setup setup)
    {
        var (carol, circuit, _) = await setup.World.PeerAsync("carol");
        setup.World.Nat("cafe", NatBehavior.PortRestrictedCone, "203.0.113.40", "carol");
        await carol.StartAsync([setup.Relay.AdvertisedAddresses[0].Encapsulate(CircuitSuffix)], CancellationToken.None);
        var atAlice = setup.AliceDcutr!.WaitForOutcomeAsync(carol.PeerId, CancellationToken.None);
        await setup.Alice.ConnectAsync(CircuitAddress.For(setup.Relay.ListenAddresses[0], setup.Relay.PeerId, carol.PeerId), CancellationToken.None);
        var outcome = await atAlice;
        Assert.That(outcome.IsDirect, Is.True, outcome.ToString());
    }

    [Test]
    public void HolePunch_ReplaysExactly_ForTheSameSeed()
    {
        var options = SimulationTest.Options(seed: 2027);
        var first = SimulationTest.Run(PunchAsync, options);
        var second = SimulationTest.Run(PunchAsync, options);

        Assert.That(second.TraceHash, Is.EqualTo(first.TraceHash));
        Assert.That(second.Clock.Elapsed, Is.EqualTo(first.Clock.Elapsed));

        static async Task PunchAsync(SimulationExecutor sim)
        {
            await using var setup = await SetUpAsync(sim, NatBehavior.PortRestrictedCone, NatBehavior.RestrictedCone);
            var atBob = setup.BobDcutr!.WaitForOutcomeAsync(setup.Alice.PeerId, CancellationToken.None);
            await setup.Alice.ConnectAsync(setup.BobViaRelay, CancellationToken.None);
            Assert.That((await atBob).IsDirect, Is.True);
        }
    }

    private static NatBehavior Preset(string name) => name switch
    {
        nameof(NatBehavior.FullCone) => NatBehavior.FullCone,
        nameof(NatBehavior.RestrictedCone) => NatBehavior.RestrictedCone,
        nameof(NatBehavior.PortRestrictedCone) => NatBehavior.PortRestrictedCone,
        nameof(NatBehavior.Symmetric) => NatBehavior.Symmetric,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };
}
