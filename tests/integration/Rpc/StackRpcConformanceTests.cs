using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Identify;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Conformance;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Integration.Rpc;

/// <summary>
/// The real <see cref="RpcNode"/> on a full host stack (Noise, Yamux) over some transport, on the
/// suite's clock (the simulation's, unless the transport is real). Every new node learns the addresses of the earlier ones and they of it.
/// </summary>
public abstract class StackRpcConformanceTests : RpcConformanceTests
{
    private readonly List<(P2PHost Host, RpcNode Rpc, string Name)> _stack = [];

    /// <summary>RpcNodeStackTests makes the 10,000 calls on one connection; here a thousand show the same.</summary>
    protected override int ManyCalls => 1000;

    protected abstract ITransport CreateTransport(string nodeName);

    protected abstract Multiaddress ListenAddress(string nodeName);

    protected virtual Task CrashNodeAsync(string nodeName, P2PHost host) => host.DisposeAsync().AsTask();

    internal static HostOptions HostOptionsFor(ITransport transport, TimeProvider time, string? nodeName = null) => new()
    {
        // Drawn from the seed in a simulation, so a seed replays the same peer ids.
        Identity = SimulationExecutor.Current is { } sim && nodeName is not null
            ? KeyPair.FromRandom(sim.CreateRandom("identity", nodeName))
            : KeyPair.Generate(),
        Transports = [transport],
        TimeProvider = time,
        // Room for the many-calls test; keep-alive off since the suite's clock jumps.
        Yamux = new YamuxOptions { MaxInboundStreams = 20_000, MaxAcceptBacklog = 20_000, KeepAliveInterval = null },
    };

    protected override async Task<RpcConformanceNode> CreateNodeAsync(string name, RpcOptions options, IDiscovery discovery)
    {
        var host = new P2PHost(HostOptionsFor(CreateTransport(name), Time, name));
        await host.StartAsync([ListenAddress(name)], TestToken);
        var rpc = new RpcNode(host, options, discovery);
        lock (_stack)
        {
            foreach (var (other, _, _) in _stack)
            {
                other.PeerStore.AddAddresses(host.PeerId, host.AdvertisedAddresses);
                host.PeerStore.AddAddresses(other.PeerId, other.AdvertisedAddresses);
            }
            _stack.Add((host, rpc, name));
        }
        return new RpcConformanceNode(host.PeerId, rpc, rpc, host.AdvertisedAddresses, async () =>
        {
            await rpc.DisposeAsync();
            await host.DisposeAsync();
        });
    }

    protected override Task CrashAsync(RpcConformanceNode node)
    {
        lock (_stack)
        {
            var (host, _, name) = _stack.Single(s => s.Host.PeerId == node.PeerId);
            return CrashNodeAsync(name, host);
        }
    }

    /// <summary>The host under <paramref name="node"/>.</summary>
    protected P2PHost HostOf(RpcConformanceNode node)
    {
        lock (_stack) return _stack.Single(s => s.Host.PeerId == node.PeerId).Host;
    }

    /// <summary>
    /// Every connection's identify exchange has ended. It starts on connect and runs beside the test's
    /// calls; a clock jump before the answer arrived fires its timeout, and the listener then closes
    /// the connection as one whose peer never answered (<see cref="HostOptions.CloseInboundWithoutIdentify"/>),
    /// under the next call on it.
    /// </summary>
    protected override async Task WhenSettledAsync()
    {
        (P2PHost Host, PeerConnection Connection)[] connections;
        lock (_stack) connections = _stack.SelectMany(s => s.Host.Connections.Select(c => (s.Host, c))).ToArray();
        foreach (var (host, connection) in connections)
        {
            try
            {
                await host.IdentifyAsync(connection, TestToken);
            }
            catch (Exception e) when (e is IdentifyException or ObjectDisposedException)
            {
                // Ended all the same: failed, the connection closed, or the host (a crashed node) stopped.
            }
        }
    }

    protected override async Task OnTearDownAsync()
    {
        foreach (var (host, rpc, _) in _stack)
        {
            await rpc.DisposeAsync();
            await host.DisposeAsync();
        }
        _stack.Clear();
    }
}
