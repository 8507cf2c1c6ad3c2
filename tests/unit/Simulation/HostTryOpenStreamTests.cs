using System.Runtime.ExceptionServices;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Plaintext;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Simulation;

/// <summary>
/// <see cref="P2PHost.TryOpenStreamAsync"/>: an unreachable peer, or a caller that stops waiting for the dial, is a
/// typed failure in the result (a DHT lookup meets both all the time), while
/// <see cref="P2PHost.OpenStreamAsync(PeerId, string, CancellationToken)"/> still throws it.
/// </summary>
[TestFixture]
public sealed class HostTryOpenStreamTests
{
    private const string Protocol = "/test/try-open/1.0.0";

    [Test]
    public void ACrashedPeer_IsATransportErrorInTheResult_ThrownOnceByTheTransportOnly() => SimulationTest.Run(async sim =>
    {
        var network = new InMemoryNetwork(sim.Clock, sim.Seed);
        var gone = $"gone-{sim.Seed}";
        await using var dialer = await StartHostAsync(sim, network, "dialer");
        var crashed = await StartHostAsync(sim, network, gone);
        dialer.PeerStore.AddAddresses(crashed.PeerId, [crashed.AdvertisedAddresses[0]]);
        network.Crash(gone);

        // Dial errors naming the crashed node (tests run in parallel: others' are not counted; its accept loop's end is not one).
        var thrown = 0;
        EventHandler<FirstChanceExceptionEventArgs> count = (_, e) =>
        {
            if (e.Exception is TransportException && e.Exception.Message.Contains(gone, StringComparison.Ordinal)) Interlocked.Increment(ref thrown);
        };
        AppDomain.CurrentDomain.FirstChanceException += count;
        (Facilities.Net.Yamux.YamuxStream? Stream, Exception? Error) result;
        try
        {
            result = await dialer.TryOpenStreamAsync(crashed.PeerId, Protocol, CancellationToken.None);
        }
        finally
        {
            AppDomain.CurrentDomain.FirstChanceException -= count;
        }

        Assert.That(result.Stream, Is.Null);
        Assert.That(result.Error, Is.TypeOf<TransportException>().With.Message.Contains("connection refused"));
        Assert.That(thrown, Is.EqualTo(1), "the in-memory transport's refusal, not rethrown through the host's frames");
        Exception? thrownByOpen = null;
        try
        {
            await dialer.OpenStreamAsync(crashed.PeerId, Protocol, CancellationToken.None);
        }
        catch (Exception e)
        {
            thrownByOpen = e;
        }
        Assert.That(thrownByOpen, Is.TypeOf<TransportException>().With.Message.Contains("connection refused"), "the throwing form keeps its typed error");
        await crashed.DisposeAsync();
    });

    [Test]
    public void ACallerThatStopsWaiting_GetsACancellation_WhileTheDialGoesOnForOthers() => SimulationTest.Run(async sim =>
    {
        var network = new InMemoryNetwork(sim.Clock, sim.Seed);
        network.ConfigureLinks(link => link.Latency = TimeSpan.FromMilliseconds(50));
        await using var dialer = await StartHostAsync(sim, network, "dialer");
        await using var listener = await StartHostAsync(sim, network, "listener");
        dialer.PeerStore.AddAddresses(listener.PeerId, listener.AdvertisedAddresses);

        using var impatient = new CancellationTokenSource(TimeSpan.FromMilliseconds(10), sim.Clock);
        var patient = dialer.TryOpenStreamAsync(listener.PeerId, Protocol, CancellationToken.None);
        var (stream, error) = await dialer.TryOpenStreamAsync(listener.PeerId, Protocol, impatient.Token);

        Assert.That(stream, Is.Null);
        Assert.That(error, Is.InstanceOf<OperationCanceledException>());
        var other = await patient;
        Assert.That(other.Error, Is.Null, "the shared dial was not cancelled with the one caller");
        await other.Stream!.DisposeAsync();
    });

    private static async Task<P2PHost> StartHostAsync(SimulationExecutor sim, InMemoryNetwork network, string name)
    {
        var host = await sim.StartHostAsync(network, name, sim.HostOptionsFor(network, name) with { SecurityProtocols = [PlaintextHandshake.ProtocolId] });
        host.Handle(Protocol, (_, _) => Task.CompletedTask);
        return host;
    }
}
