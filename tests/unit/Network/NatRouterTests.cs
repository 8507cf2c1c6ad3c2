using System.Net;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Network.Nat;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Network;

/// <summary>
/// NAT routers on the in-memory network, observed through real dials: what the far end sees (mapping)
/// and who gets in (filtering), mapping expiry, hairpinning, seeds.
/// </summary>
[TestFixture]
public sealed class NatRouterTests
{
    private static readonly IPAddress NatAddress = IPAddress.Parse("203.0.113.10");

    [Test]
    public void OutboundDial_ReachesAPublicNode_FromTheRoutersPublicAddress() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        network.AddNatRouter("home", NatBehavior.PortRestrictedCone, NatAddress).Add("alice");
        await using var relay = await network.ListenAsync("relay");

        var (dialer, accepted) = await network.ConnectThroughAsync("alice", InMemoryNetwork.AddressOf("relay"), relay);

        Assert.Multiple(() =>
        {
            Assert.That(accepted.RemoteAddress.TcpHostPort()?.Host, Is.EqualTo("203.0.113.10"));
            Assert.That(NatTesting.PortOf(accepted.RemoteAddress), Is.InRange(1024, 65535));
            Assert.That(accepted.LocalAddress, Is.EqualTo(InMemoryNetwork.AddressOf("relay")));
            Assert.That(dialer.LocalAddress, Is.EqualTo(InMemoryNetwork.AddressOf("alice")), "the inside node knows only its private address");
            Assert.That(dialer.RemoteAddress, Is.EqualTo(InMemoryNetwork.AddressOf("relay")));
        });
        Assert.That(await NatTesting.CarriesAsync(dialer, accepted), Is.True);
        Assert.That(await NatTesting.CarriesAsync(accepted, dialer), Is.True);
    });

    [TestCase(NatMappingBehavior.EndpointIndependent, true)]
    [TestCase(NatMappingBehavior.AddressDependent, false)]
    [TestCase(NatMappingBehavior.AddressAndPortDependent, false)]
    public void Mapping_ToTwoHosts_SharesAPublicEndpointOnlyWhenEndpointIndependent(NatMappingBehavior mapping, bool same) => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        network.AddNatRouter("home", new NatBehavior(mapping, NatFilteringBehavior.AddressAndPortDependent)).Add("alice");
        await using var relay = await network.ListenAsync("relay");
        await using var server = await network.ListenAsync("server");

        var atRelay = await network.ObservedAtAsync("alice", "relay", relay);
        var atServer = await network.ObservedAtAsync("alice", "server", server);
        var atRelayAgain = await network.ObservedAtAsync("alice", "relay", relay);

        Assert.That(atRelay == atServer, Is.EqualTo(same), $"seen at {atRelay} and {atServer}");
        Assert.That(atRelayAgain, Is.EqualTo(atRelay), "a live mapping is reused for the same destination");
    });

    [TestCase(NatMappingBehavior.EndpointIndependent, true)]
    [TestCase(NatMappingBehavior.AddressDependent, true)]
    [TestCase(NatMappingBehavior.AddressAndPortDependent, false)]
    public void Mapping_ToTwoPortsOfOneHost_DependsOnThePortOnlyWhenSymmetric(NatMappingBehavior mapping, bool same) => SimulationTest.Run(async sim =>
    {
        // Two servers behind one full-cone router are two ports of one public host.
        var network = NatTesting.CreateNetwork(sim);
        network.AddNatRouter("office", NatBehavior.FullCone).Add("bob", "carol");
        network.AddNatRouter("home", new NatBehavior(mapping, NatFilteringBehavior.AddressAndPortDependent)).Add("alice");
        await using var relay = await network.ListenAsync("relay");
        await using var bob = await network.ListenAsync("bob");
        await using var carol = await network.ListenAsync("carol");
        var bobPublic = await network.ObservedAtAsync("bob", "relay", relay);
        var carolPublic = await network.ObservedAtAsync("carol", "relay", relay);

        var (_, atBob) = await network.ConnectThroughAsync("alice", bobPublic, bob);
        var (_, atCarol) = await network.ConnectThroughAsync("alice", carolPublic, carol);

        Assert.That(atBob.RemoteAddress == atCarol.RemoteAddress, Is.EqualTo(same), $"seen at {atBob.RemoteAddress} and {atCarol.RemoteAddress}");
    });

    [Test]
    public void PrivateAddress_HasNoRoute_FromOutside_ButIsReachable_InsideTheSegment() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        network.AddNatRouter("home", NatBehavior.FullCone).Add("alice", "dave");
        await using var alice = await network.ListenAsync("alice");

        var fromOutside = await network.DialFailureAsync("server", InMemoryNetwork.AddressOf("alice"));
        var (_, accepted) = await network.ConnectThroughAsync("dave", InMemoryNetwork.AddressOf("alice"), alice);

        Assert.That(fromOutside, Is.TypeOf<TransportException>().With.Message.Contains("no route"));
        Assert.That(accepted.RemoteAddress, Is.EqualTo(InMemoryNetwork.AddressOf("dave")), "on the LAN nothing is translated");
    });

    [Test]
    public void UnsolicitedDial_ToThePublicAddress_IsDropped_AndTimesOutUnanswered() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        var home = network.AddNatRouter("home", NatBehavior.FullCone, NatAddress).Add("alice");
        await using var alice = await network.ListenAsync("alice");
        var start = sim.Clock.Elapsed;

        var failure = await network.DialFailureAsync("server", Multiaddress.Parse("/ip4/203.0.113.10/tcp/4001"));

        Assert.That(failure, Is.TypeOf<TransportException>().With.Message.Contains("timed out"));
        Assert.That(sim.Clock.Elapsed - start, Is.GreaterThanOrEqualTo(network.UnansweredDialTimeout), "a dropped SYN gets no answer: the dialer waits its connect timeout");
        Assert.That(home.MappingCount, Is.Zero);
    });

    [Test]
    public void DroppedDial_EndsAtOnce_WhenItsTokenIsCancelled() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        network.AddNatRouter("home", NatBehavior.FullCone, NatAddress).Add("alice");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5), sim.Clock);

        var failure = await network.DialFailureAsync("server", Multiaddress.Parse("/ip4/203.0.113.10/tcp/4001"), cts.Token);

        Assert.That(failure, Is.InstanceOf<OperationCanceledException>());
        Assert.That(sim.Clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(6)));
    });

    [Test]
    public void DialToAnAddressNoRouterHas_HasNoRoute_AndOtherIpAddressesCannotBeDialed() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        network.AddNatRouter("home", NatBehavior.FullCone, NatAddress).Add("alice");
        var transport = network.CreateTransport("server");

        var failure = await network.DialFailureAsync("server", Multiaddress.Parse("/ip4/198.51.100.99/tcp/4001"));

        Assert.Multiple(() =>
        {
            Assert.That(failure, Is.TypeOf<TransportException>());
            Assert.That(transport.CanDial(Multiaddress.Parse("/ip4/203.0.113.10/tcp/4001")), Is.True);
            Assert.That(transport.CanDial(Multiaddress.Parse("/ip4/198.51.100.99/tcp/4001")), Is.False);
            Assert.That(transport.CanListen(Multiaddress.Parse("/ip4/203.0.113.10/tcp/4001")), Is.False);
        });
    });

    [TestCase(NatFilteringBehavior.EndpointIndependent, true, true)]
    [TestCase(NatFilteringBehavior.AddressDependent, true, false)]
    [TestCase(NatFilteringBehavior.AddressAndPortDependent, false, false)]
    public void Filtering_AdmitsOtherPortsOfAContactedHost_AndStrangers_PerBehaviour(
        NatFilteringBehavior filtering, bool otherPortOfContactedHostGetsIn, bool strangerGetsIn) => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        network.AddNatRouter("office", NatBehavior.FullCone).Add("bob", "carol");
        network.AddNatRouter("home", new NatBehavior(NatMappingBehavior.EndpointIndependent, filtering)).Add("alice");
        await using var relay = await network.ListenAsync("relay");
        await using var alice = await network.ListenAsync("alice");
        await using var bob = await network.ListenAsync("bob");
        var bobPublic = await network.ObservedAtAsync("bob", "relay", relay);
        var carolPublic = await network.ObservedAtAsync("carol", "relay", relay);
        Assert.That(carolPublic.TcpHostPort()?.Host, Is.EqualTo(bobPublic.TcpHostPort()?.Host));
        // Alice dials bob's endpoint of the office: the office's address is now contacted, carol's port is not.
        var (toBob, atBob) = await network.ConnectThroughAsync("alice", bobPublic, bob);
        var alicePublic = await network.ObservedAtAsync("alice", "relay", relay);
        // Closed before bob dials back: while it is open its four-tuple is taken, and bob's dial would leave from another port.
        foreach (var end in new[] { toBob, atBob }) await end.DisposeAsync();

        var fromBob = network.DialAsync("bob", alicePublic).AsTask();
        var acceptedFromBob = await alice.AcceptAsync(CancellationToken.None);
        var fromCarol = await network.DialFailureAsync("carol", alicePublic);
        var fromServer = await network.DialFailureAsync("server", alicePublic);

        var bobSide = await fromBob;
        Assert.Multiple(() =>
        {
            Assert.That(acceptedFromBob.RemoteAddress, Is.EqualTo(bobPublic), "the contacted endpoint always gets in");
            Assert.That(bobSide.RemoteAddress, Is.EqualTo(alicePublic));
            Assert.That(fromCarol, otherPortOfContactedHostGetsIn ? Is.Null : Is.TypeOf<TransportException>());
            Assert.That(fromServer, strangerGetsIn ? Is.Null : Is.TypeOf<TransportException>());
        });
    });

    [Test]
    public void InboundThroughAMapping_IsRefused_WhenTheInsideNodeDoesNotListen() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        network.AddNatRouter("home", NatBehavior.FullCone).Add("alice");
        await using var relay = await network.ListenAsync("relay");
        var alicePublic = await network.ObservedAtAsync("alice", "relay", relay);
        var start = sim.Clock.Elapsed;

        var failure = await network.DialFailureAsync("server", alicePublic);

        Assert.That(failure, Is.TypeOf<TransportException>().With.Message.Contains("refused"));
        Assert.That(sim.Clock.Elapsed - start, Is.LessThan(TimeSpan.FromSeconds(1)), "a reset comes back at once");
    });

    [Test]
    public void Mapping_Expires_AfterItsTimeout_OnceNoConnectionHoldsIt() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        var timeout = TimeSpan.FromMinutes(2);
        var home = network.AddNatRouter("home", NatBehavior.FullCone with { MappingTimeout = timeout }).Add("alice");
        await using var relay = await network.ListenAsync("relay");
        await using var alice = await network.ListenAsync("alice");
        var (toRelay, atRelay) = await network.ConnectThroughAsync("alice", InMemoryNetwork.AddressOf("relay"), relay);
        var alicePublic = atRelay.RemoteAddress;

        // An open connection keeps the mapping however long it idles.
        await sim.Clock.AdvanceAsync(timeout * 3);
        var (serverEnd, whileOpen) = await network.ConnectThroughAsync("server", alicePublic, alice);
        await serverEnd.DisposeAsync();
        await whileOpen.DisposeAsync();
        await toRelay.DisposeAsync();
        await atRelay.DisposeAsync();

        await sim.Clock.AdvanceAsync(timeout - TimeSpan.FromSeconds(1));
        var (serverAgain, justBefore) = await network.ConnectThroughAsync("server", alicePublic, alice);
        await serverAgain.DisposeAsync();
        await justBefore.DisposeAsync();
        await sim.Clock.AdvanceAsync(timeout + TimeSpan.FromSeconds(1));
        var mappingsAfter = home.MappingCount;
        var afterExpiry = await network.DialFailureAsync("server", alicePublic);

        Assert.That(mappingsAfter, Is.Zero);
        Assert.That(afterExpiry, Is.TypeOf<TransportException>().With.Message.Contains("timed out"));
    });

    [Test]
    public void EstablishedIdleTimeout_ResetsAQuietConnection_ButNotOneKeptAlive() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        var idleTimeout = TimeSpan.FromMinutes(5);
        network.AddNatRouter("home", NatBehavior.PortRestrictedCone with { EstablishedIdleTimeout = idleTimeout }).Add("alice");
        await using var relay = await network.ListenAsync("relay");
        var (aliceEnd, relayEnd) = await network.ConnectThroughAsync("alice", InMemoryNetwork.AddressOf("relay"), relay);

        for (var i = 0; i < 6; i++)
        {
            await sim.Clock.AdvanceAsync(TimeSpan.FromMinutes(2));
            Assert.That(await NatTesting.CarriesAsync(i % 2 == 0 ? aliceEnd : relayEnd, i % 2 == 0 ? relayEnd : aliceEnd), Is.True, $"keep-alive {i}");
        }
        await sim.Clock.AdvanceAsync(idleTimeout + TimeSpan.FromSeconds(1));

        await Assert.ThatAsync(async () => await relayEnd.Stream.ReadAsync(new byte[1]), Throws.InstanceOf<IOException>().With.Message.Contains("idle"));
        await Assert.ThatAsync(async () => await aliceEnd.Stream.WriteAsync(new byte[1]), Throws.InstanceOf<IOException>());
    });

    [Test]
    public void Hairpinning_ReachesANeighbourAtItsPublicEndpoint_OnlyWhenEnabled([Values] bool hairpinning) => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        network.AddNatRouter("home", NatBehavior.FullCone with { Hairpinning = hairpinning }).Add("alice", "dave");
        await using var relay = await network.ListenAsync("relay");
        await using var dave = await network.ListenAsync("dave");
        var davePublic = await network.ObservedAtAsync("dave", "relay", relay);
        var alicePublic = await network.ObservedAtAsync("alice", "relay", relay);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10), sim.Clock);

        var dial = network.DialAsync("alice", davePublic, cts.Token).AsTask();
        if (hairpinning)
        {
            var accepted = await dave.AcceptAsync(CancellationToken.None);
            await dial;
            Assert.That(accepted.RemoteAddress, Is.EqualTo(alicePublic), "hairpinned traffic comes from the sender's mapping");
        }
        else
        {
            await Assert.ThatAsync(() => dial, Throws.InstanceOf<OperationCanceledException>());
        }
    });

    [Test]
    public void Reboot_ForgetsMappings_AndResetsConnectionsThroughTheRouter() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        var home = network.AddNatRouter("home", NatBehavior.FullCone).Add("alice");
        await using var relay = await network.ListenAsync("relay");
        var (dialer, accepted) = await network.ConnectThroughAsync("alice", InMemoryNetwork.AddressOf("relay"), relay);

        home.Reboot();

        Assert.That(home.MappingCount, Is.Zero);
        await Assert.ThatAsync(async () => await accepted.Stream.ReadAsync(new byte[1]), Throws.InstanceOf<IOException>());
        await Assert.ThatAsync(async () => await dialer.Stream.ReadAsync(new byte[1]), Throws.InstanceOf<IOException>());
    });

    [Test]
    public void ForwardedPort_LetsAStrangerIn_WhateverTheFiltering_AndOutlivesAReboot() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        var home = network.AddNatRouter("home", NatBehavior.Symmetric, NatAddress).Add("alice").Forward(4001, "alice");
        await using var alice = await network.ListenAsync("alice");
        var forwarded = Multiaddress.Parse("/ip4/203.0.113.10/tcp/4001");

        var (_, accepted) = await network.ConnectThroughAsync("stranger", forwarded, alice);
        home.Reboot();
        var (dialer, again) = await network.ConnectThroughAsync("stranger", forwarded, alice);

        Assert.That(accepted.LocalAddress, Is.EqualTo(InMemoryNetwork.AddressOf("alice")), "the inside node knows only its private address");
        Assert.That(await NatTesting.CarriesAsync(dialer, again), Is.True);
        Assert.That(home.MappingCount, Is.Zero, "a forward is configuration, not a mapping");
        await using var stranger = await network.ListenAsync("stranger");
        var atStranger = await network.ObservedAtAsync("alice", "stranger", stranger);
        Assert.That(NatTesting.PortOf(atStranger), Is.Not.EqualTo(4001), "alice's own dials leave through ordinary mappings");
    });

    [Test]
    public void Forward_RefusesANodeNotBehindTheRouter_ATakenPort_AndNoPort() => SimulationTest.Run(sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        var home = network.AddNatRouter("home", NatBehavior.FullCone, NatAddress).Add("alice").Forward(4001, "alice");

        Assert.Multiple(() =>
        {
            Assert.That(() => home.Forward(4002, "bob"), Throws.ArgumentException);
            Assert.That(() => home.Forward(4001, "alice"), Throws.InvalidOperationException);
            Assert.That(() => home.Forward(0, "alice"), Throws.InstanceOf<ArgumentOutOfRangeException>());
        });
        return Task.CompletedTask;
    });

    [Test]
    public void MappedPorts_AreTheSame_ForTheSameSeed_WhateverTheOrderOfDials()
    {
        var relayFirst = SimulationTest.Run(sim => ObservePortsAsync(sim, relayFirst: true), SimulationTest.Options(seed: 42));
        var serverFirst = SimulationTest.Run(sim => ObservePortsAsync(sim, relayFirst: false), SimulationTest.Options(seed: 42));
        var otherSeed = SimulationTest.Run(sim => ObservePortsAsync(sim, relayFirst: true), SimulationTest.Options(seed: 43));

        Assert.That(serverFirst, Is.EqualTo(relayFirst));
        Assert.That(otherSeed, Is.Not.EqualTo(relayFirst));
    }

    [Test]
    public void Router_RefusesASecondRouterForANode_AndADuplicateAddress() => SimulationTest.Run(sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        network.AddNatRouter("home", NatBehavior.FullCone, NatAddress).Add("alice");

        Assert.Multiple(() =>
        {
            Assert.That(() => network.AddFirewall("fw").Add("alice"), Throws.InvalidOperationException);
            Assert.That(() => network.AddNatRouter("other", NatBehavior.FullCone, NatAddress), Throws.ArgumentException);
            Assert.That(() => network.AddNatRouter("home", NatBehavior.FullCone), Throws.ArgumentException);
        });
        return Task.CompletedTask;
    });

    /// <summary>The ports a symmetric NAT gives one node's dials to two destinations, in the given order.</summary>
    private static async Task<(int Relay, int Server)> ObservePortsAsync(SimulationExecutor sim, bool relayFirst)
    {
        var network = new InMemoryNetwork(sim.Clock, sim.Seed);
        network.AddNatRouter("home", NatBehavior.Symmetric).Add("alice");
        await using var relay = await network.ListenAsync("relay");
        await using var server = await network.ListenAsync("server");
        if (relayFirst)
        {
            var r = await network.ObservedAtAsync("alice", "relay", relay);
            var s = await network.ObservedAtAsync("alice", "server", server);
            return (NatTesting.PortOf(r), NatTesting.PortOf(s));
        }
        var s2 = await network.ObservedAtAsync("alice", "server", server);
        var r2 = await network.ObservedAtAsync("alice", "relay", relay);
        return (NatTesting.PortOf(r2), NatTesting.PortOf(s2));
    }
}
