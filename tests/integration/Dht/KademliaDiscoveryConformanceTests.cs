using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit;
using P2PInference.TestKit.Conformance;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Integration.Dht;

/// <summary>
/// The discovery conformance suite on the real Kademlia DHT: full hosts (Noise, Yamux, identify, kad)
/// over the in-memory network, hosts and DHT on the suite's fake clock.
/// </summary>
/// <remarks>
/// libp2p kad has no message to withdraw a provider record, so an unannounced or gracefully stopped
/// provider may be found until its copies expire: <see cref="UnannounceGrace"/> is the TTL plus the
/// sweep margin. A crash is a crash of the process: the network drops the node without a goodbye,
/// then its DHT and host objects are released so their timers stop (no more re-announces); nothing
/// is sent to the other nodes.
/// </remarks>
[TestFixture]
public sealed class KademliaDiscoveryConformanceTests : DiscoveryConformanceTests
{
    private readonly Dictionary<IDiscovery, Node> _nodes = new(ReferenceEqualityComparer.Instance);
    private InMemoryNetwork? _network;

    protected override TimeSpan UnannounceGrace => RecordTtl + ExpiryMargin;

    protected override async Task<IReadOnlyList<IDiscovery>> CreateNodesAsync(int count, SimulationClock time, CancellationToken cancellationToken)
    {
        var random = TestSeed.CreateRandom();
        _network ??= new InMemoryNetwork(time, random.Next());
        var created = new List<IDiscovery>(count);
        Multiaddress? first = null;
        for (var i = 0; i < count; i++)
        {
            var name = $"kad-{_nodes.Count}";
            var host = new P2PHost(new HostOptions
            {
                Identity = KeyPair.FromRandom(random),
                RandomSource = new SeededRandomSource(new Random(random.Next())),
                Transports = [_network.CreateTransport(name)],
                TimeProvider = time,
                // A crash resets connections at once in memory; pings would only add timer steps.
                Yamux = new YamuxOptions { TimeProvider = time, KeepAliveInterval = null },
                MaintenanceInterval = TimeSpan.FromSeconds(30),
            });
            await host.StartAsync([InMemoryNetwork.AddressOf(name)], cancellationToken);
            var dht = new KademliaDht(host, new KademliaDhtOptions
            {
                TimeProvider = time,
                ProviderRecordTtl = RecordTtl,
                ReannounceInterval = ReannounceInterval,
                BootstrapPeers = first is null ? [] : [first],
                RandomSeed = random.Next(),
            });
            _nodes[dht] = new Node(name, host, dht);
            await dht.StartAsync(cancellationToken);
            first ??= host.AdvertisedAddresses[0];
            created.Add(dht);
        }

        return created;
    }

    protected override async Task CrashAsync(IDiscovery node)
    {
        var n = _nodes[node];
        _network!.Crash(n.Name);
        // The process is gone: its timers must not re-announce. Disposing drops only local state.
        await n.Dht.DisposeAsync();
        await n.Host.DisposeAsync();
    }

    protected override async Task StopAsync(IDiscovery node)
    {
        var n = _nodes[node];
        await n.Dht.DisposeAsync();
        await n.Host.DisposeAsync();
    }

    protected override PeerId PeerOf(IDiscovery node) => _nodes[node].Host.PeerId;

    protected override IReadOnlyList<Multiaddress> AddressesOf(IDiscovery node) => _nodes[node].Host.ListenAddresses;

    // The base class's teardown stops the nodes after derived teardowns run, so state resets here.
    [SetUp]
    public void ForgetNodes()
    {
        _nodes.Clear();
        _network = null;
    }

    private sealed record Node(string Name, P2PHost Host, KademliaDht Dht);
}
