using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Integration.Rpc;

/// <summary>The RPC suite on the full stack over the in-memory network; a crash is the network's (no goodbye).</summary>
public sealed class InMemoryStackRpcConformanceTests : StackRpcConformanceTests
{
    private InMemoryNetwork? _network;

    private InMemoryNetwork Network => _network ??= new InMemoryNetwork(Time, SimulationExecutor.Current?.Seed ?? 0);

    protected override ITransport CreateTransport(string nodeName) => Network.CreateTransport(nodeName);

    protected override Multiaddress ListenAddress(string nodeName) => InMemoryNetwork.AddressOf(nodeName);

    protected override Task CrashNodeAsync(string nodeName, P2PHost host)
    {
        Network.Crash(nodeName);
        return Task.CompletedTask;
    }

    protected override async Task OnTearDownAsync()
    {
        await base.OnTearDownAsync();
        _network = null;
    }
}
