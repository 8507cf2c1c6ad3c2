using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Conformance;

namespace P2PInference.Tests.Integration.Stack;

/// <summary>The full stack on real sockets: TCP on loopback.</summary>
[TestFixture]
public sealed class TcpStackTests : HostStackConformanceTests
{
    protected override ITransport CreateTransport(string nodeName) => new TcpTransport();

    protected override Multiaddress ListenAddress(string nodeName) => Multiaddress.Parse("/ip4/127.0.0.1/tcp/0");
}
