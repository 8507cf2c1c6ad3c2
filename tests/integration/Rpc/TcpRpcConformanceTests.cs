using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Tests.Integration.Rpc;

/// <summary>The RPC suite on real sockets: TCP on loopback, so on real threads with a manual clock, not in a simulation.</summary>
public sealed class TcpRpcConformanceTests : StackRpcConformanceTests
{
    protected override bool Simulated => false;

    protected override ITransport CreateTransport(string nodeName) => new TcpTransport();

    protected override Multiaddress ListenAddress(string nodeName) => Multiaddress.Parse("/ip4/127.0.0.1/tcp/0");
}
