using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.TestKit.Harness;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Network.Nat;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Hosting;

namespace P2PInference.Tests.E2E.Workers;

/// <summary>
/// Processors behind NAT routers (<see cref="TestClusterOptions.Nat"/>): they cannot be dialled, find
/// the cluster's relay in the DHT, reserve on it, announce their circuit address, and the gateway
/// reaches them through it — with no direct path between the two at all.
/// </summary>
[TestFixture]
public sealed class WorkerNatTests
{
    [TestCase(nameof(NatBehavior.PortRestrictedCone))]
    [TestCase(nameof(NatBehavior.Symmetric))]
    public void Gateway_ReachesAProcessorBehindNat_ThroughTheRelayFoundInTheDht(string behavior) => SimulationTest.Run(async sim =>
    {
        var nat = new TestNatOptions { Behavior = behavior == nameof(NatBehavior.Symmetric) ? NatBehavior.Symmetric : NatBehavior.PortRestrictedCone };
        await using var network = await WorkerCluster.StartAsync(new WorkerClusterOptions { Processors = 1, Nat = nat }, CancellationToken.None);
        var processor = network.Processor(1);
        var relay = network.Cluster["relay"];
        var processorNat = processor.Get<WorkerNat>();

        await network.WaitUntilAsync(() => processorNat.Relays.Contains(relay.PeerId));
        await network.WaitUntilAsync(() => network.Gateway.Get<WorkerNat>().Status.Reachability == Facilities.Net.Protocols.AutoNat.NatReachability.Public);
        var providers = await network.Gateway.Discovery!.LookupAsync(WorkerTopics.Processor, CancellationToken.None);
        // No direct path: the processor may not have dialled the gateway either (as two peers behind NATs would be).
        network.Cluster.Network.Partition(WorkerCluster.GatewayNode, processor.Name, PartitionMode.FailNewDials);
        await network.Gateway.Host.DisconnectAsync(processor.PeerId);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
        var response = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 3), CancellationToken.None);

        var record = providers.Single(p => p.PeerId == processor.PeerId);
        var connection = network.Gateway.Host.GetConnection(processor.PeerId);
        Assert.Multiple(() =>
        {
            Assert.That(record.Addresses.Where(CircuitAddress.IsCircuit).Select(a => a.ToString()),
                Has.Some.StartsWith(relay.Address.ToString()), "the provider record carries the circuit address through the relay");
            Assert.That(response.Text, Is.Not.Empty);
            Assert.That(response.Processor, Is.EqualTo(processor.PeerId.ToString()));
            Assert.That(connection, Is.Not.Null);
            Assert.That(connection!.IsRelayed, Is.True, "the gateway reached the processor through the relay");
            Assert.That(relay.Get<RelayService>().CircuitCount, Is.GreaterThanOrEqualTo(1), "the relay carries the circuit");
            Assert.That(processorNat.Status.Reachability, Is.Not.EqualTo(Facilities.Net.Protocols.AutoNat.NatReachability.Public));
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Client_ReachesAGatewayBehindNat_ThroughTheRelay() => SimulationTest.Run(async sim =>
    {
        var nat = new TestNatOptions { Roles = ["gateway"] };
        await using var network = await WorkerCluster.StartAsync(new WorkerClusterOptions { Processors = 1, Nat = nat }, CancellationToken.None);
        var relay = network.Cluster["relay"];
        var gatewayNat = network.Gateway.Get<WorkerNat>();

        await network.WaitUntilAsync(() => gatewayNat.Relays.Contains(relay.PeerId));
        // AutoNAT's dial-backs are dropped by the gateway's NAT.
        await network.WaitUntilAsync(() => gatewayNat.Status.Reachability == Facilities.Net.Protocols.AutoNat.NatReachability.Private);
        network.Cluster.Network.Partition(WorkerCluster.ClientNode, WorkerCluster.GatewayNode, PartitionMode.FailNewDials);
        var clientHost = network.Cluster[WorkerCluster.ClientNode].Host;
        await clientHost.DisconnectAsync(network.Gateway.PeerId);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
        var response = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(response.Text, Is.Not.Empty);
            Assert.That(clientHost.GetConnection(network.Gateway.PeerId)?.IsRelayed, Is.True, "the client reached the gateway through the relay");
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void Gateway_ReachesAProcessorBehindConeNat_ThroughTheRelay_ThenDirectly() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(new WorkerClusterOptions { Processors = 1, Nat = new TestNatOptions() }, CancellationToken.None);
        var processor = network.Processor(1);
        var relay = network.Cluster["relay"];
        await network.WaitUntilAsync(() => processor.Get<WorkerNat>().Relays.Contains(relay.PeerId));
        var seen = new List<bool>();
        network.Gateway.PeerConnected += c =>
        {
            if (c.RemotePeer == processor.PeerId) seen.Add(c.IsRelayed);
        };
        await network.Gateway.Host.DisconnectAsync(processor.PeerId);
        await processor.Host.DisconnectAsync(network.Gateway.PeerId);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);

        var response = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 5), CancellationToken.None);
        await network.WaitUntilAsync(() => network.Gateway.Host.GetConnection(processor.PeerId) is { IsRelayed: false });

        Assert.That(response.Processor, Is.EqualTo(processor.PeerId.ToString()));
        Assert.That(seen, Does.Contain(true).And.Contain(false), "first through the relay, then direct (the processor's hole punch, or its own dial out)");
    }, WorkerCluster.Simulation());

    [Test]
    public void RelayCrash_TheProcessorLosesItsSlot_AndReservesAgainOnceTheRelayIsBack() => SimulationTest.Run(async sim =>
    {
        await using var network = await WorkerCluster.StartAsync(new WorkerClusterOptions { Processors = 1, Nat = new TestNatOptions() }, CancellationToken.None);
        var processor = network.Processor(1);
        var relay = network.Cluster["relay"];
        await network.WaitUntilAsync(() => HoldsActiveSlot(processor, relay));

        await network.Cluster.KillAsync("relay", CancellationToken.None);
        await network.WaitUntilAsync(() => !HoldsActiveSlot(processor, relay));
        await network.Cluster.RestartAsync("relay", CancellationToken.None);
        await network.WaitUntilAsync(() => HoldsActiveSlot(processor, relay));
        network.Cluster.Network.Partition(WorkerCluster.GatewayNode, processor.Name, PartitionMode.FailNewDials);
        await network.Gateway.Host.DisconnectAsync(processor.PeerId);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
        var response = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 9), CancellationToken.None);

        Assert.That(response.Processor, Is.EqualTo(processor.PeerId.ToString()), "reached through the relay again");
        Assert.That(processor.Get<WorkerNat>().Relays, Is.EqualTo(new[] { relay.PeerId }));
    }, WorkerCluster.Simulation());

    private static bool HoldsActiveSlot(TestNode processor, TestNode relay) =>
        processor.IsRunning && processor.Context.CircuitRelay!.Reservations.Any(r => r.Relay == relay.PeerId && r.IsActive);

    [Test]
    public void ProcessorBehindAFullConeNat_IsAnnouncedAtItsMapping_AndTheGatewayDialsItThere() => SimulationTest.Run(async sim =>
    {
        // A cloud VM's 1:1 NAT: the processor listens on an address only its own network knows, and the NAT lets
        // strangers in at its mapping. AutoNAT finds that out, and the DHT record must say where, or nobody can call it.
        var nat = new TestNatOptions { Behavior = NatBehavior.FullCone };
        await using var network = await WorkerCluster.StartAsync(new WorkerClusterOptions { Processors = 1, Nat = nat }, CancellationToken.None);
        var processor = network.Processor(1);
        var processorNat = processor.Get<WorkerNat>();

        await network.WaitUntilAsync(() => processor.Host.ConfirmedAddresses.Count > 0 && processorNat.Relays.Count == 0);
        var mapping = processor.Host.ConfirmedAddresses.Single();
        // The re-announce the change started runs on the processor's own steps.
        await network.AdvanceAsync(TimeSpan.FromSeconds(10));
        var providers = await network.Gateway.Discovery!.LookupAsync(WorkerTopics.Processor, CancellationToken.None);
        await network.Gateway.Host.DisconnectAsync(processor.PeerId);
        var (client, _, _) = await network.SignedUpClientAsync(CancellationToken.None);
        var response = await client.InferAsync(Requests.Greedy(network.Data.Prompt(), seed: 3), CancellationToken.None);

        var connection = network.Gateway.Host.GetConnection(processor.PeerId);
        Assert.Multiple(() =>
        {
            Assert.That(processorNat.Status.Reachability, Is.EqualTo(Facilities.Net.Protocols.AutoNat.NatReachability.Public));
            Assert.That(mapping.ToString(), Does.StartWith("/ip4/203.0.113."), "the router's public address");
            Assert.That(providers.Single(p => p.PeerId == processor.PeerId).Addresses.Select(a => a.WithoutPeerId()), Does.Contain(mapping),
                "the provider record carries the mapping");
            Assert.That(response.Processor, Is.EqualTo(processor.PeerId.ToString()));
            Assert.That(connection, Is.Not.Null);
            Assert.That(connection!.IsRelayed, Is.False, "the gateway dialed the processor directly");
            Assert.That(connection.RemoteAddress.WithoutPeerId(), Is.EqualTo(mapping));
        });
    }, WorkerCluster.Simulation());

    [Test]
    public void PublicProcessor_ReservesNothing() => SimulationTest.Run(async sim =>
    {
        // The knob with no role behind NAT: the relay is there, but everyone is public.
        var nat = new TestNatOptions { Roles = [] };
        await using var network = await WorkerCluster.StartAsync(new WorkerClusterOptions { Processors = 1, Nat = nat }, CancellationToken.None);
        var processorNat = network.Processor(1).Get<WorkerNat>();

        await network.WaitUntilAsync(() => processorNat.Status.Reachability != Facilities.Net.Protocols.AutoNat.NatReachability.Unknown);
        await network.AdvanceAsync(TimeSpan.FromMinutes(2));

        Assert.That(processorNat.Status.Reachability, Is.EqualTo(Facilities.Net.Protocols.AutoNat.NatReachability.Public));
        Assert.That(processorNat.Relays, Is.Empty);
        Assert.That(network.Processor(1).Host.ListenAddresses.Where(CircuitAddress.IsCircuit), Is.Empty);
    }, WorkerCluster.Simulation());
}
