using System.Collections.Concurrent;
using System.Globalization;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Harness;
using P2PInference.TestKit.Simulation;

namespace P2PInference.TestKit.Rpc;

/// <summary>
/// The RPC twin: <see cref="IRpcClient"/>/<see cref="IRpcServer"/> nodes by PeerId with no network
/// stack underneath, but the same behaviour as <see cref="RpcNode"/> (status codes, deadlines on the
/// <see cref="TimeProvider"/>, cancellation reaching the handler, message size and per-peer limits,
/// firewall, topic routing) — held to it by <c>RpcConformanceTests</c>. Faults per directed link
/// (<see cref="Link"/>): latency on the <see cref="TimeProvider"/>, broken links, dropped messages,
/// one- and two-way partitions; per node: <see cref="Crash"/>.
/// </summary>
public sealed class InMemoryRpcNetwork
{
    private readonly ConcurrentDictionary<PeerId, InMemoryRpcNode> _nodes = new();
    private readonly ConcurrentDictionary<(PeerId From, PeerId To), InMemoryRpcLink> _links = new();
    private int _identities;

    public InMemoryRpcNetwork(TimeProvider? timeProvider = null) => TimeProvider = timeProvider ?? TimeProvider.System;

    public TimeProvider TimeProvider { get; }

    public IReadOnlyCollection<InMemoryRpcNode> Nodes => _nodes.Values.ToArray();

    /// <summary>
    /// A node with <paramref name="peerId"/> (a fresh identity when null: in a simulation the n-th
    /// node created gets the n-th identity of the seed). Its options' time provider is replaced by
    /// the network's, so every node shares one clock.
    /// </summary>
    public InMemoryRpcNode CreateNode(PeerId? peerId = null, RpcOptions? options = null, IDiscovery? discovery = null)
    {
        peerId ??= NewIdentity().PeerId;
        var node = new InMemoryRpcNode(this, peerId, (options ?? new RpcOptions()) with { TimeProvider = TimeProvider }, discovery);
        if (!_nodes.TryAdd(peerId, node)) throw new InvalidOperationException($"a node {peerId} exists on this network already");
        return node;
    }

    // Peer ids decide routing and tie-breaks, so inside a simulation they come from its seed too.
    private KeyPair NewIdentity() => SimulationExecutor.Current is { } sim
        ? KeyPair.FromSeed(SeedDerivation.Bytes(sim.Seed, "in-memory-rpc-network", "node",
            Interlocked.Increment(ref _identities).ToString(CultureInfo.InvariantCulture)))
        : KeyPair.Generate();

    /// <summary>The directed link <paramref name="from"/> → <paramref name="to"/>, created on first use.</summary>
    public InMemoryRpcLink Link(PeerId from, PeerId to)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        return _links.GetOrAdd((from, to), static _ => new InMemoryRpcLink());
    }

    /// <summary>Both directions between <paramref name="a"/> and <paramref name="b"/> get <paramref name="fault"/>.</summary>
    public void Partition(PeerId a, PeerId b, RpcLinkFault fault = RpcLinkFault.Drop)
    {
        Link(a, b).Fault = fault;
        Link(b, a).Fault = fault;
    }

    /// <summary>Only messages from <paramref name="from"/> to <paramref name="to"/> are affected (an asymmetric partition).</summary>
    public void PartitionOneWay(PeerId from, PeerId to, RpcLinkFault fault = RpcLinkFault.Drop) => Link(from, to).Fault = fault;

    /// <summary>Clears every link's fault (latencies stay).</summary>
    public void Heal()
    {
        foreach (var link in _links.Values) link.Fault = RpcLinkFault.None;
    }

    /// <summary>
    /// The node dies without a goodbye: its handlers are cancelled and send nothing more, calls in
    /// flight to it fail with Unavailable, its own calls are cancelled, and it is unreachable from now on.
    /// </summary>
    public void Crash(PeerId peer)
    {
        if (_nodes.TryGetValue(peer, out var node)) node.Crash();
    }

    internal InMemoryRpcNode? Find(PeerId peer) => _nodes.TryGetValue(peer, out var node) ? node : null;

    internal void Remove(InMemoryRpcNode node) => _nodes.TryRemove(new KeyValuePair<PeerId, InMemoryRpcNode>(node.PeerId, node));
}
