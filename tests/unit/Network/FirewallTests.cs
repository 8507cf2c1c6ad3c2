using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Network.Nat;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Network;

/// <summary>A firewall translates nothing and drops unsolicited inbound dials.</summary>
[TestFixture]
public sealed class FirewallTests
{
    [Test]
    public void UnsolicitedInbound_IsDropped_WhileOutboundLeavesWithTheNodesOwnAddress() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        network.AddFirewall("office").Add("carol");
        await using var carol = await network.ListenAsync("carol");
        await using var server = await network.ListenAsync("server");

        var unsolicited = await network.DialFailureAsync("server", InMemoryNetwork.AddressOf("carol"));
        var seenAt = await network.ObservedAtAsync("carol", "server", server);

        Assert.That(unsolicited, Is.TypeOf<TransportException>().With.Message.Contains("timed out"));
        Assert.That(seenAt, Is.EqualTo(InMemoryNetwork.AddressOf("carol")));
    });

    [Test]
    public void AfterDialingOut_OnlyTheContactedNodeGetsIn_UntilTheStateTimesOut() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        var timeout = TimeSpan.FromMinutes(1);
        network.AddFirewall("office", stateTimeout: timeout).Add("carol");
        await using var carol = await network.ListenAsync("carol");
        await using var server = await network.ListenAsync("server");
        var (toServer, atServer) = await network.ConnectThroughAsync("carol", InMemoryNetwork.AddressOf("server"), server);
        // While that connection is open its four-tuple is taken: a dial back would leave from another port.
        var whileOpen = await network.DialFailureAsync("server", InMemoryNetwork.AddressOf("carol"));
        foreach (var end in new[] { toServer, atServer }) await end.DisposeAsync();

        var (back, accepted) = await network.ConnectThroughAsync("server", InMemoryNetwork.AddressOf("carol"), carol);
        var stranger = await network.DialFailureAsync("relay", InMemoryNetwork.AddressOf("carol"));
        foreach (var end in new[] { back, accepted }) await end.DisposeAsync();
        await sim.Clock.AdvanceAsync(timeout + TimeSpan.FromSeconds(1));
        var afterTimeout = await network.DialFailureAsync("server", InMemoryNetwork.AddressOf("carol"));

        Assert.Multiple(() =>
        {
            Assert.That(whileOpen, Is.TypeOf<TransportException>());
            Assert.That(accepted.RemoteAddress, Is.EqualTo(InMemoryNetwork.AddressOf("server")));
            Assert.That(stranger, Is.TypeOf<TransportException>());
            Assert.That(afterTimeout, Is.TypeOf<TransportException>());
        });
    });

    [Test]
    public void EndpointIndependentFiltering_LetsAnyoneIn_OnceTheNodeHasDialedOut() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        network.AddFirewall("office", NatFilteringBehavior.EndpointIndependent).Add("carol");
        await using var carol = await network.ListenAsync("carol");
        await using var server = await network.ListenAsync("server");

        var before = await network.DialFailureAsync("relay", InMemoryNetwork.AddressOf("carol"));
        await network.ObservedAtAsync("carol", "server", server);
        var (_, accepted) = await network.ConnectThroughAsync("relay", InMemoryNetwork.AddressOf("carol"), carol);

        Assert.That(before, Is.TypeOf<TransportException>());
        Assert.That(accepted.RemoteAddress, Is.EqualTo(InMemoryNetwork.AddressOf("relay")));
    });

    [Test]
    public void NodesBehindOneFirewall_ReachEachOtherDirectly() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        network.AddFirewall("office").Add("carol", "erin");
        await using var carol = await network.ListenAsync("carol");

        var (_, accepted) = await network.ConnectThroughAsync("erin", InMemoryNetwork.AddressOf("carol"), carol);

        Assert.That(accepted.RemoteAddress, Is.EqualTo(InMemoryNetwork.AddressOf("erin")));
    });

    [Test]
    public void FirewalledNode_AndANodeBehindAPortRestrictedCone_HolePunch() => SimulationTest.Run(async sim =>
    {
        var network = NatTesting.CreateNetwork(sim);
        network.AddFirewall("office").Add("carol");
        network.AddNatRouter("home", NatBehavior.PortRestrictedCone).Add("bob");
        await using var relay = await network.ListenAsync("relay");
        await using var carol = await network.ListenAsync("carol");
        await using var bob = await network.ListenAsync("bob");
        var carolPublic = await network.ObservedAtAsync("carol", "relay", relay);
        var bobPublic = await network.ObservedAtAsync("bob", "relay", relay);
        var opened = network.ConnectionsOpened;

        var fromCarol = network.DialAsync("carol", bobPublic).AsTask();
        var fromBob = network.DialAsync("bob", carolPublic).AsTask();
        var carolEnd = await fromCarol;
        var bobEnd = await fromBob;

        Assert.That(network.ConnectionsOpened - opened, Is.EqualTo(1));
        Assert.That(await NatTesting.CarriesAsync(carolEnd, bobEnd), Is.True);
    });
}
