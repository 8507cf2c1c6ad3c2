using System.Net;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Network.Nat;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Network;

/// <summary>The whole host stack (Noise, Yamux, identify) over NATs on the in-memory network.</summary>
[TestFixture]
public sealed class NatHostTests
{
    [TestCase(nameof(NatBehavior.FullCone), true)]
    [TestCase(nameof(NatBehavior.PortRestrictedCone), false)]
    public void Identify_ObservesTheNatsPublicEndpoint_WhichOutsidersReachOnlyThroughAFullCone(string nat, bool outsiderConnects) => SimulationTest.Run(async sim =>
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(10), sim.Clock);
        var token = deadline.Token;
        var network = NatTesting.CreateNetwork(sim);
        network.AddNatRouter("home", NatSimultaneousOpenTests.Preset(nat), IPAddress.Parse("198.51.100.20")).Add("alice");
        await using var relay = await sim.StartHostAsync(network, "relay", cancellationToken: token);
        await using var alice = await sim.StartHostAsync(network, "alice", cancellationToken: token);
        await using var server = await sim.StartHostAsync(network, "server", cancellationToken: token);
        await using var erin = await sim.StartHostAsync(network, "erin", cancellationToken: token);

        await alice.ConnectAsync(relay.AdvertisedAddresses[0], token);
        var observed = (await alice.IdentifyAsync(relay.PeerId, token)).ObservedAddress;
        Exception? atPrivateAddress = null;
        try
        {
            await erin.ConnectAsync(alice.AdvertisedAddresses[0], token);
        }
        catch (TransportException e)
        {
            atPrivateAddress = e;
        }
        Exception? atObserved = null;
        try
        {
            var connection = await server.ConnectAsync(observed!.WithPeerId(alice.PeerId), token);
            Assert.That(connection.RemotePeer, Is.EqualTo(alice.PeerId));
        }
        catch (TransportException e)
        {
            atObserved = e;
        }

        Assert.Multiple(() =>
        {
            Assert.That(observed?.TcpHostPort()?.Host, Is.EqualTo("198.51.100.20"), $"observed {observed}");
            Assert.That(atPrivateAddress?.Message, Does.Contain("no route"));
            Assert.That(atObserved, outsiderConnects ? Is.Null : Is.Not.Null);
        });
    });
}
