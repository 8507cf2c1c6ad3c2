using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Conformance;
using P2PInference.TestKit.Rpc;

namespace P2PInference.Tests.Unit.Rpc;

/// <summary>The RPC twin held to the same suite as the real node.</summary>
public sealed class InMemoryRpcConformanceTests : RpcConformanceTests
{
    private InMemoryRpcNetwork? _network;

    // A thousand calls in flight at once show that each gets its own answer as well as ten thousand
    // did, at a tenth of the simulated work (that one test took 1-2 s); the stack fixtures use 1,000 too.
    protected override int ManyCalls => 1_000;

    protected override Task<RpcConformanceNode> CreateNodeAsync(string name, RpcOptions options, IDiscovery discovery)
    {
        _network ??= new InMemoryRpcNetwork(Time);
        var node = _network.CreateNode(options: options, discovery: discovery);
        return Task.FromResult(new RpcConformanceNode(node.PeerId, node, node, Array.Empty<Multiaddress>(), node.DisposeAsync));
    }

    protected override Task CrashAsync(RpcConformanceNode node)
    {
        _network!.Crash(node.PeerId);
        return Task.CompletedTask;
    }

    protected override Task OnTearDownAsync()
    {
        _network = null;
        return Task.CompletedTask;
    }
}
