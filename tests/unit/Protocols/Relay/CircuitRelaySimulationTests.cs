using System.Net;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Network.Nat;
using P2PInference.TestKit.Simulation;
using Google.Protobuf;
using Proto = P2PInference.Facilities.Net.Protocols.Relay.Proto;

namespace P2PInference.Tests.Unit.Protocols.Relay;

/// <summary>
/// Circuit relay v2 on the in-memory network, on virtual time: a peer behind a NAT (which drops
/// unsolicited inbound dials) reserves on a public relay and is reached through it.
/// </summary>
[TestFixture]
public sealed class CircuitRelaySimulationTests
{
    private const string Echo = RelayTestWorld.Echo;
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(5);
    private static readonly Multiaddress CircuitSuffix = Multiaddress.Parse("/p2p-circuit");

    private static Multiaddress ListenAddressOf(P2PHost relay) => relay.AdvertisedAddresses[0].Encapsulate(CircuitSuffix);

    /// <summary><paramref name="host"/> listens through <paramref name="relay"/> (which reserves there) and returns its reservation.</summary>
    private static async Task<RelayReservation> ListenThroughAsync(P2PHost host, CircuitRelayTransport circuit, P2PHost relay)
    {
        await host.StartAsync([ListenAddressOf(relay)], CancellationToken.None);
        return circuit.Reservations.Single(r => r.Relay == relay.PeerId);
    }

    /// <summary>The arrangement most tests start from: a relay, alice behind a port-restricted cone NAT listening through it, and bob in the open.</summary>
    private static async Task<(P2PHost Relay, RelayService Service, P2PHost Alice, CircuitRelayTransport AliceCircuit, P2PHost Bob, RelayReservation Reservation)>
        AliceBehindNatOnTheRelayAsync(RelayTestWorld world, RelayServiceOptions? options = null)
    {
        var (relay, service) = await world.RelayAsync(options);
        var (alice, circuit) = await world.PeerAsync("alice");
        var (bob, _) = await world.PeerAsync("bob");
        world.Nat("home", NatBehavior.PortRestrictedCone, "198.51.100.20", "alice");
        var reservation = await ListenThroughAsync(alice, circuit, relay);
        return (relay, service, alice, circuit, bob, reservation);
    }

    private static Multiaddress CircuitTo(P2PHost relay, P2PHost target) =>
        CircuitAddress.For(relay.ListenAddresses[0], relay.PeerId, target.PeerId);

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

    private static async Task<Exception?> DialFailureAsync(P2PHost from, Multiaddress to)
    {
        try
        {
            await from.ConnectAsync(to, CancellationToken.None);
            return null;
        }
        catch (Exception e) when (e is IOException)
        {
            return e;
        }
    }

    [TestCase("PortRestrictedCone")]
    [TestCase("Symmetric")]
    public void PeerBehindNat_ReservesOnRelay_AndIsReachedThroughIt(string nat) => SimulationTest.Run(async sim =>
    {
        await using var world = new RelayTestWorld(sim);
        var (relay, service) = await world.RelayAsync();
        var (alice, aliceCircuit) = await world.PeerAsync("alice");
        var (bob, _) = await world.PeerAsync("bob");
        world.Nat("home", nat == "Symmetric" ? NatBehavior.Symmetric : NatBehavior.PortRestrictedCone, "198.51.100.20", "alice");
        Assert.That(await DialFailureAsync(bob, alice.AdvertisedAddresses[0]), Is.Not.Null, "alice cannot be dialled directly");

        var reservation = await ListenThroughAsync(alice, aliceCircuit, relay);
        var circuitAddress = CircuitTo(relay, alice);

        Assert.That(reservation.IsActive, Is.True);
        Assert.That(reservation.Addresses, Is.EqualTo(new[] { circuitAddress }));
        Assert.That(reservation.Expires, Is.EqualTo(sim.Clock.GetUtcNow() + new RelayServiceOptions().ReservationTtl).Within(TimeSpan.FromSeconds(1)));
        Assert.That(alice.AdvertisedAddresses, Does.Contain(circuitAddress), "identify advertises the circuit address");
        Assert.That(service.HasReservation(alice.PeerId), Is.True);

        var connection = await bob.ConnectAsync(circuitAddress, CancellationToken.None);
        var rtt = await bob.PingAsync(alice.PeerId, CancellationToken.None);
        var echoed = await EchoAsync(bob, alice.PeerId, "hello through the relay"u8.ToArray());
        var identify = await bob.IdentifyAsync(connection, CancellationToken.None);
        await sim.Clock.WaitUntilAsync(() => alice.GetConnection(bob.PeerId) is not null, Patience);
        var atAlice = alice.GetConnection(bob.PeerId)!;

        Assert.That(connection.RemotePeer, Is.EqualTo(alice.PeerId), "Noise proved alice's key end to end");
        Assert.That(connection.IsRelayed, Is.True);
        Assert.That(connection.IsLimited, Is.True, "the relay's limit applies");
        Assert.That(connection.RemoteAddress, Is.EqualTo(circuitAddress));
        Assert.That(atAlice.IsRelayed && atAlice.IsLimited, Is.True);
        Assert.That(atAlice.Direction, Is.EqualTo(ConnectionDirection.Inbound));
        Assert.That(atAlice.RemoteAddress, Is.EqualTo(CircuitTo(relay, bob)));
        Assert.That(echoed, Is.EqualTo("hello through the relay"u8.ToArray()));
        Assert.That(rtt, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(40)), "two hops each way");
        Assert.That(identify.ListenAddresses, Does.Contain(ListenAddressOf(relay)));
        Assert.That(service.CircuitCount, Is.EqualTo(1));
    });

    [Test]
    public void BothPeersBehindSymmetricNats_StillMeetThroughTheRelay() => SimulationTest.Run(async sim =>
    {
        await using var world = new RelayTestWorld(sim);
        var (relay, _) = await world.RelayAsync();
        var (alice, aliceCircuit) = await world.PeerAsync("alice");
        var (bob, _) = await world.PeerAsync("bob");
        world.Nat("home", NatBehavior.Symmetric, "198.51.100.20", "alice");
        world.Nat("office", NatBehavior.Symmetric, "203.0.113.30", "bob");
        await ListenThroughAsync(alice, aliceCircuit, relay);

        await bob.ConnectAsync(CircuitTo(relay, alice), CancellationToken.None);
        var echoed = await EchoAsync(bob, alice.PeerId, new byte[1000]);

        Assert.That(echoed, Has.Length.EqualTo(1000));
    });

    [Test]
    public void PeerKnownOnlyByItsRelayAddress_AsTheDhtGivesIt_IsDialledByPeerId() => SimulationTest.Run(async sim =>
    {
        await using var world = new RelayTestWorld(sim);
        var (relay, _, alice, aliceCircuit, bob, _) = await AliceBehindNatOnTheRelayAsync(world);
        // Provider records and identify carry listen addresses without the peer's own /p2p/ suffix.
        Assert.That(alice.ListenAddresses, Does.Contain(ListenAddressOf(relay)));
        bob.PeerStore.AddAddresses(alice.PeerId, alice.ListenAddresses);

        var connection = await bob.ConnectAsync(alice.PeerId, CancellationToken.None);

        Assert.That(connection.IsRelayed, Is.True, "the direct address failed at alice's NAT, the circuit worked");
        Assert.That(connection.RemoteAddress, Is.EqualTo(CircuitTo(relay, alice)));
    });

    [Test]
    public void Reservation_IsRenewedBeforeItExpires_OnTheClock() => SimulationTest.Run(async sim =>
    {
        await using var world = new RelayTestWorld(sim);
        var ttl = TimeSpan.FromMinutes(10);
        var (relay, service, alice, circuit, bob, reservation) = await AliceBehindNatOnTheRelayAsync(world, new RelayServiceOptions { ReservationTtl = ttl });
        var renewedAt = new List<TimeSpan>();
        reservation.Renewed += _ => renewedAt.Add(sim.Clock.Elapsed);
        var start = sim.Clock.Elapsed;

        await sim.Clock.AdvanceAsync(TimeSpan.FromHours(1));

        Assert.That(reservation.IsActive, Is.True);
        Assert.That(service.HasReservation(alice.PeerId), Is.True);
        Assert.That(renewedAt, Has.Count.GreaterThanOrEqualTo(6), "about every 3/4 of ten minutes");
        Assert.That(renewedAt[0] - start, Is.InRange(TimeSpan.FromMinutes(7), TimeSpan.FromMinutes(8)));
        Assert.That(relay.GetConnection(alice.PeerId), Is.Not.Null, "the relay connection is kept open, beyond the idle timeout");
        Assert.That(service.ReservationCount, Is.EqualTo(1), "a renewal replaces the slot");
        Assert.That(await DialFailureAsync(bob, CircuitTo(relay, alice)), Is.Null);
    });

    [Test]
    public void Reservation_NotRenewed_Expires_AndTheDialIsRefusedNoReservation() => SimulationTest.Run(async sim =>
    {
        await using var world = new RelayTestWorld(sim);
        var ttl = TimeSpan.FromMinutes(10);
        var (relay, service, alice, circuit, bob, reservation) = await AliceBehindNatOnTheRelayAsync(world, new RelayServiceOptions { ReservationTtl = ttl });

        await reservation.DisposeAsync();
        await sim.Clock.AdvanceAsync(ttl + TimeSpan.FromSeconds(1));
        var failure = await DialFailureAsync(bob, CircuitTo(relay, alice));

        Assert.That(service.HasReservation(alice.PeerId), Is.False);
        Assert.That(failure, Is.TypeOf<RelayRefusedException>().With.Property(nameof(RelayRefusedException.Status)).EqualTo(RelayStatus.NoReservation));
        Assert.That(bob.GetConnection(alice.PeerId), Is.Null);
    });

    [Test]
    public void Reservations_AreLimitedInAll_PerAddress_AndByPolicy() => SimulationTest.Run(async sim =>
    {
        await using var world = new RelayTestWorld(sim);
        var options = new RelayServiceOptions
        {
            MaxReservations = 3,
            MaxReservationsPerAddress = 1,
            AllowReservation = peer => peer != BannedPeer(sim),
        };
        var (relay, service) = await world.RelayAsync(options);
        var peers = new Dictionary<string, CircuitRelayTransport>();
        foreach (var name in new[] { "alice", "carol", "dave", "erin", "frank", "mallory" })
            peers[name] = (await world.PeerAsync(name, name == "mallory" ? "banned" : null)).Circuit;
        world.Nat("home", NatBehavior.PortRestrictedCone, "198.51.100.20", "alice", "carol");
        world.Nat("office", NatBehavior.PortRestrictedCone, "198.51.100.30", "dave");
        world.Nat("cafe", NatBehavior.PortRestrictedCone, "198.51.100.40", "erin");
        world.Nat("hotel", NatBehavior.PortRestrictedCone, "198.51.100.50", "frank");
        world.Nat("cellar", NatBehavior.PortRestrictedCone, "198.51.100.60", "mallory");
        var relayAddress = relay.AdvertisedAddresses[0];

        async Task<RelayStatus> ReserveAsync(string name)
        {
            try
            {
                await peers[name].ReserveAsync(relayAddress, CancellationToken.None);
                return RelayStatus.Ok;
            }
            catch (RelayRefusedException e)
            {
                return e.Status;
            }
        }

        var statuses = new Dictionary<string, RelayStatus>();
        foreach (var name in new[] { "alice", "carol", "mallory", "dave", "erin", "frank" }) statuses[name] = await ReserveAsync(name);
        var aliceAgain = await ReserveAsync("alice");

        Assert.That(statuses, Is.EqualTo(new Dictionary<string, RelayStatus>
        {
            ["alice"] = RelayStatus.Ok,
            ["carol"] = RelayStatus.ResourceLimitExceeded, // behind the same NAT address as alice
            ["mallory"] = RelayStatus.ReservationRefused,
            ["dave"] = RelayStatus.Ok,
            ["erin"] = RelayStatus.Ok,
            ["frank"] = RelayStatus.ResourceLimitExceeded, // three are held
        }));
        Assert.That(aliceAgain, Is.EqualTo(RelayStatus.Ok), "renewing does not count against the limits");
        Assert.That(service.ReservationCount, Is.EqualTo(3));
    });

    [Test]
    public void BehindAProxy_ThePerAddressLimitDoesNotCountEveryPeerAsOne() => SimulationTest.Run(async sim =>
    {
        await using var world = new RelayTestWorld(sim);
        // Behind a proxy every peer seems to come from its one address; here, as alike, from one NAT's.
        var (relay, service) = await world.RelayAsync(new RelayServiceOptions { MaxReservationsPerAddress = 1 }, inboundPeersArePublic: true);
        var circuits = new List<CircuitRelayTransport>();
        foreach (var name in new[] { "alice", "carol", "dave" }) circuits.Add((await world.PeerAsync(name)).Circuit);
        world.Nat("home", NatBehavior.PortRestrictedCone, "198.51.100.20", "alice", "carol", "dave");

        foreach (var circuit in circuits) await circuit.ReserveAsync(relay.AdvertisedAddresses[0], CancellationToken.None);

        Assert.That(service.ReservationCount, Is.EqualTo(3), "only MaxReservations bounds them");
    });

    private static PeerId BannedPeer(SimulationExecutor sim) => KeyPair.FromRandom(sim.CreateRandom("identity", "banned")).PeerId;

    [Test]
    public void DataLimit_CutsTheRelayedConnection() => SimulationTest.Run(async sim =>
    {
        await using var world = new RelayTestWorld(sim);
        var limit = new RelayLimit(TimeSpan.FromMinutes(10), 64 * 1024);
        var (relay, service, alice, circuit, bob, _) = await AliceBehindNatOnTheRelayAsync(world, new RelayServiceOptions { ConnectionLimit = limit });
        var ends = new List<RelayCircuitEnd>();
        service.CircuitClosed += (_, _, end) => ends.Add(end);
        var connection = await bob.ConnectAsync(CircuitTo(relay, alice), CancellationToken.None);
        var small = await EchoAsync(bob, alice.PeerId, new byte[1024]);

        Exception? failure = null;
        try
        {
            await EchoAsync(bob, alice.PeerId, new byte[256 * 1024]);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
            failure = e;
        }
        await sim.Clock.WaitUntilAsync(() => connection.IsClosed && ends.Count == 1, Patience);

        Assert.That(small, Has.Length.EqualTo(1024), "traffic within the limit goes through");
        Assert.That(failure, Is.Not.Null);
        Assert.That(ends, Is.EqualTo(new[] { RelayCircuitEnd.DataLimit }));
        Assert.That(service.BytesRelayed, Is.LessThanOrEqualTo(2 * limit.Data!.Value), "never more than the limit in each direction");
        Assert.That(service.CircuitCount, Is.Zero);
        await sim.Clock.WaitUntilAsync(() => alice.GetConnection(bob.PeerId) is null, Patience);
        Assert.That(service.HasReservation(alice.PeerId), Is.True, "the reservation outlives the circuit");
    });

    [Test]
    public void DurationLimit_ClosesTheRelayedConnection() => SimulationTest.Run(async sim =>
    {
        await using var world = new RelayTestWorld(sim);
        var (relay, service, alice, circuit, bob, _) = await AliceBehindNatOnTheRelayAsync(world, new RelayServiceOptions { ConnectionLimit = new RelayLimit(TimeSpan.FromSeconds(60), null) });
        var ends = new List<RelayCircuitEnd>();
        service.CircuitClosed += (_, _, end) => ends.Add(end);

        var connection = await bob.ConnectAsync(CircuitTo(relay, alice), CancellationToken.None);
        var openedAt = sim.Clock.Elapsed;
        await sim.Clock.WaitUntilAsync(() => connection.IsClosed, Patience);

        Assert.That(connection.IsLimited, Is.True);
        Assert.That(sim.Clock.Elapsed - openedAt, Is.InRange(TimeSpan.FromSeconds(59), TimeSpan.FromSeconds(61)));
        Assert.That(ends, Is.EqualTo(new[] { RelayCircuitEnd.DurationLimit }));
    });

    [Test]
    public void Circuits_AreLimitedPerPeer_AndATargetThatDoesNotListen_IsConnectionFailed() => SimulationTest.Run(async sim =>
    {
        await using var world = new RelayTestWorld(sim);
        var (relay, _) = await world.RelayAsync(new RelayServiceOptions { MaxCircuitsPerPeer = 1 });
        var (alice, aliceCircuit) = await world.PeerAsync("alice");
        var (bob, _) = await world.PeerAsync("bob");
        var (carol, _) = await world.PeerAsync("carol");
        var (dave, daveCircuit) = await world.PeerAsync("dave");
        world.Nat("home", NatBehavior.PortRestrictedCone, "198.51.100.20", "alice");
        world.Nat("office", NatBehavior.PortRestrictedCone, "198.51.100.30", "dave");
        await ListenThroughAsync(alice, aliceCircuit, relay);
        // Dave reserves but listens nowhere: the relay's STOP is refused and the dialer told CONNECTION_FAILED.
        await using var daveReservation = await daveCircuit.ReserveAsync(relay.AdvertisedAddresses[0], CancellationToken.None);

        var bobToAlice = await DialFailureAsync(bob, CircuitTo(relay, alice));
        var carolToAlice = await DialFailureAsync(carol, CircuitTo(relay, alice));
        var bobToDave = await DialFailureAsync(carol, CircuitTo(relay, dave));

        Assert.That(bobToAlice, Is.Null);
        Assert.That(carolToAlice, Is.TypeOf<RelayRefusedException>().With.Property(nameof(RelayRefusedException.Status)).EqualTo(RelayStatus.ResourceLimitExceeded));
        Assert.That(bobToDave, Is.TypeOf<RelayRefusedException>().With.Property(nameof(RelayRefusedException.Status)).EqualTo(RelayStatus.ConnectionFailed));
    });

    [Test]
    public void RelayReachedOverARelayedConnection_RefusesToServe_PermissionDenied() => SimulationTest.Run(async sim =>
    {
        await using var world = new RelayTestWorld(sim);
        var (relay, _) = await world.RelayAsync();
        var (hidden, hiddenService) = await world.RelayAsync(name: "hidden");
        var (bob, _) = await world.PeerAsync("bob");
        world.Nat("home", NatBehavior.PortRestrictedCone, "198.51.100.20", "hidden");
        // The hidden relay is behind a NAT and reachable only through the public one.
        await hidden.StartAsync([ListenAddressOf(relay)], CancellationToken.None);
        var connection = await bob.ConnectAsync(CircuitTo(relay, hidden), CancellationToken.None);

        var stream = await bob.OpenStreamAsync(hidden.PeerId, RelayMessageCodec.HopProtocolId, CancellationToken.None);
        HopMessage answer;
        await using (stream)
        {
            await RelayMessageCodec.WriteAsync(stream, new HopMessage(HopMessageType.Reserve), CancellationToken.None);
            answer = await RelayMessageCodec.ReadHopAsync(stream, CancellationToken.None);
        }

        Assert.That(connection.IsRelayed, Is.True);
        Assert.That(answer.Status, Is.EqualTo(RelayStatus.PermissionDenied), "no circuits over circuits");
        Assert.That(hiddenService.ReservationCount, Is.Zero);
    });

    [Test]
    public void RelayCrash_ClosesTheRelayedConnection_LosesTheReservation_WhichComesBackWithTheRelay() => SimulationTest.Run(async sim =>
    {
        await using var world = new RelayTestWorld(sim);
        var (relay, _, alice, circuit, bob, reservation) = await AliceBehindNatOnTheRelayAsync(world);
        var lost = 0;
        reservation.Lost += _ => lost++;
        var connection = await bob.ConnectAsync(CircuitTo(relay, alice), CancellationToken.None);

        world.Network.Crash("relay");
        await sim.Clock.WaitUntilAsync(() => connection.IsClosed && lost == 1, Patience);
        Assert.That(reservation.IsActive, Is.False);
        Assert.That(alice.GetConnection(bob.PeerId), Is.Null);

        await relay.DisposeAsync();
        var (restarted, service) = await world.RelayAsync(name: "relay");
        await sim.Clock.WaitUntilAsync(() => reservation.IsActive, Patience);
        Assert.That(restarted.PeerId, Is.EqualTo(relay.PeerId));
        Assert.That(service.HasReservation(alice.PeerId), Is.True);
        Assert.That(await DialFailureAsync(bob, CircuitTo(restarted, alice)), Is.Null, "reachable again once the reservation is back");
    });

    [Test]
    public void MalformedRequests_AreAnsweredWithTheirStatus_AndTheRelayKeepsServing() => SimulationTest.Run(async sim =>
    {
        await using var world = new RelayTestWorld(sim);
        var (relay, _) = await world.RelayAsync();
        var (alice, circuit) = await world.PeerAsync("alice");
        var (bob, _) = await world.PeerAsync("bob");
        var (mallory, _) = await world.PeerAsync("mallory");
        world.Nat("home", NatBehavior.PortRestrictedCone, "198.51.100.20", "alice");
        await ListenThroughAsync(alice, circuit, relay);
        await mallory.ConnectAsync(relay.AdvertisedAddresses[0], CancellationToken.None);

        async Task<string> SendAsync(byte[] bytes)
        {
            var stream = await mallory.OpenStreamAsync(relay.PeerId, RelayMessageCodec.HopProtocolId, CancellationToken.None);
            await using (stream)
            {
                await stream.WriteAsync(bytes, CancellationToken.None);
                await stream.CompleteWritesAsync(CancellationToken.None);
                try
                {
                    var answer = await RelayMessageCodec.ReadHopAsync(stream, CancellationToken.None);
                    return $"{answer.Type} {answer.Status}";
                }
                catch (IOException e)
                {
                    return e.GetType().Name;
                }
            }
        }

        static byte[] Framed(byte[] body) => [.. Varint.Encode((ulong)body.Length), .. body];
        var garbage = await SendAsync(Framed([0xff, 0xff, 0xff]));
        var oversized = await SendAsync([.. Varint.Encode(1 << 20), 1, 2, 3]);
        var status = await SendAsync(Framed(new Proto.HopMessage { Type = Proto.HopMessage.Types.Type.Status, Status = Proto.Status.Ok }.ToByteArray()));
        var connectWithoutPeer = await SendAsync(Framed(new Proto.HopMessage { Type = Proto.HopMessage.Types.Type.Connect }.ToByteArray()));
        var undefinedType = await SendAsync(Framed(new Proto.HopMessage { Type = (Proto.HopMessage.Types.Type)9 }.ToByteArray()));
        var random = sim.CreateRandom("garbage");
        var randomAnswers = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            var bytes = new byte[random.Next(1, 100)];
            random.NextBytes(bytes);
            randomAnswers.Add(await SendAsync(bytes));
        }

        Assert.That(garbage, Is.EqualTo("Status MalformedMessage"));
        Assert.That(oversized, Is.EqualTo("Status MalformedMessage"));
        Assert.That(status, Is.EqualTo("Status UnexpectedMessage"));
        Assert.That(connectWithoutPeer, Is.EqualTo("Status MalformedMessage"));
        Assert.That(undefinedType, Is.EqualTo("Status MalformedMessage"));
        Assert.That(randomAnswers, Has.All.StartWith("Status ").Or.EqualTo("YamuxStreamResetException"),
            "answered, or reset when not even a message could be read");
        Assert.That(mallory.GetConnection(relay.PeerId), Is.Not.Null, "bad requests cost a stream, not the connection");
        Assert.That(await DialFailureAsync(bob, CircuitTo(relay, alice)), Is.Null, "the relay keeps serving others");
        Assert.That(await EchoAsync(bob, alice.PeerId, [1, 2, 3]), Is.EqualTo(new byte[] { 1, 2, 3 }));
    });

    [Test]
    public void SameSeed_SameTrace()
    {
        var first = SimulationTest.Run(RelayedScenarioAsync, SimulationTest.Options(seed: 4242));
        var second = SimulationTest.Run(RelayedScenarioAsync, SimulationTest.Options(seed: 4242));

        Assert.That(second.TraceHash, Is.EqualTo(first.TraceHash));
        Assert.That(second.Clock.Elapsed, Is.EqualTo(first.Clock.Elapsed));
    }

    private static async Task RelayedScenarioAsync(SimulationExecutor sim)
    {
        await using var world = new RelayTestWorld(sim);
        world.Network.ConfigureLinks(link =>
        {
            link.Latency = TimeSpan.FromMilliseconds(20);
            link.Jitter = TimeSpan.FromMilliseconds(10);
        });
        var (relay, _) = await world.RelayAsync(new RelayServiceOptions { ReservationTtl = TimeSpan.FromMinutes(5) });
        var (alice, circuit) = await world.PeerAsync("alice");
        var (bob, _) = await world.PeerAsync("bob");
        world.Nat("home", NatBehavior.Symmetric, "198.51.100.20", "alice");
        await ListenThroughAsync(alice, circuit, relay);
        await bob.ConnectAsync(CircuitTo(relay, alice), CancellationToken.None);
        await EchoAsync(bob, alice.PeerId, new byte[10_000]);
        await sim.Clock.AdvanceAsync(TimeSpan.FromMinutes(12));
    }
}
