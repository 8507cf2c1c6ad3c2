using P2PInference.Tests.Unit.Support;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Rpc;

/// <summary>
/// <see cref="Facilities.Rpc.RpcCallContext.RemoteOrigin"/>: what the gateway's per-address limits count a caller under.
/// Behind a declared proxy every caller has the proxy's address, so it is none rather than one bucket for everyone.
/// </summary>
[TestFixture]
public sealed class RpcCallerOriginTests
{
    [TestCase(false, "/memory/client")]
    [TestCase(true, null)]
    public void AHandler_SeesTheOriginOfItsCallersConnection_AndNoneBehindAProxy(bool serverBehindProxy, string? expected) => SimulationTest.Run(async sim =>
    {
        var ct = CancellationToken.None;
        await using var stack = new SimulatedRpcStack(sim);
        var (serverHost, server) = await stack.NodeAsync("server", ct, inboundPeersArePublic: serverBehindProxy);
        var (_, client) = await stack.NodeAsync("client", ct);
        string? seen = "not called";
        server.Respond("where", (_, context) =>
        {
            seen = context.RemoteOrigin;
            return ValueTask.FromResult<ReadOnlyMemory<byte>>(Array.Empty<byte>());
        });

        await client.RequestAsync(serverHost.PeerId, "where", ReadOnlyMemory<byte>.Empty, null, ct);

        Assert.That(seen, Is.EqualTo(expected));
    });

    [TestCase("/ip4/198.51.100.7/tcp/4001", "/ip4/198.51.100.7")]
    [TestCase("/ip4/127.0.0.1/tcp/4001", null)]
    [TestCase(null, null)]
    public async Task TheTwin_GivesTheOriginOfTheAddressATestSets(string? address, string? expected)
    {
        var network = new InMemoryRpcNetwork();
        var server = network.CreateNode();
        var client = network.CreateNode();
        client.Address = address is null ? null : Facilities.Addressing.Multiaddress.Parse(address);
        string? seen = "not called";
        server.Respond("where", (_, context) =>
        {
            seen = context.RemoteOrigin;
            return ValueTask.FromResult<ReadOnlyMemory<byte>>(Array.Empty<byte>());
        });

        await client.RequestAsync(server.PeerId, "where", ReadOnlyMemory<byte>.Empty, null, CancellationToken.None);

        Assert.That(seen, Is.EqualTo(expected));
    }
}
