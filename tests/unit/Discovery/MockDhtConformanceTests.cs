using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.TestKit;
using P2PInference.TestKit.Conformance;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Discovery;

/// <summary>
/// The discovery conformance suite on the mock DHT: as configured by default (instant lookups,
/// unannounce withdraws at once), with stale records (withdrawn records linger until the TTL, as in
/// libp2p Kademlia), and with slow joins and lookups (operations that only finish as fake time moves).
/// </summary>
[TestFixture(Variant.Instant)]
[TestFixture(Variant.StaleRecords)]
[TestFixture(Variant.SlowLookups)]
public sealed class MockDhtConformanceTests(MockDhtConformanceTests.Variant variant) : DiscoveryConformanceTests
{
    public enum Variant
    {
        Instant,
        StaleRecords,
        SlowLookups,
    }

    protected override TimeSpan UnannounceGrace => variant == Variant.StaleRecords ? RecordTtl + ExpiryMargin : TimeSpan.Zero;

    protected override Task<IReadOnlyList<IDiscovery>> CreateNodesAsync(int count, SimulationClock time, CancellationToken cancellationToken)
    {
        var random = TestSeed.CreateRandom();
        var registry = new MockDhtRegistry(time, random.Next())
        {
            RecordTtl = RecordTtl,
            ReannounceInterval = ReannounceInterval,
            StaleRecords = variant == Variant.StaleRecords,
        };
        if (variant == Variant.SlowLookups)
        {
            registry.LookupDelay = TimeSpan.FromSeconds(3);
            registry.JoinDelay = TimeSpan.FromSeconds(2);
        }

        var nodes = new List<IDiscovery>(count);
        for (var i = 0; i < count; i++)
        {
            nodes.Add(registry.CreateNode(KeyPair.FromRandom(random).PeerId, [Multiaddress.Memory($"node-{i}")]));
        }

        return Task.FromResult<IReadOnlyList<IDiscovery>>(nodes);
    }

    protected override Task CrashAsync(IDiscovery node)
    {
        ((MockDht)node).Crash();
        return Task.CompletedTask;
    }

    protected override PeerId PeerOf(IDiscovery node) => ((MockDht)node).PeerId;

    protected override IReadOnlyList<Multiaddress> AddressesOf(IDiscovery node) => ((MockDht)node).Addresses;
}
