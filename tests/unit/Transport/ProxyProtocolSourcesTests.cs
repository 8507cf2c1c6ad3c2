using System.Net;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Tests.Unit.Transport;

/// <summary>
/// <see cref="TcpTransportOptions.ProxyProtocolSources"/>: which accepted connections must start with a PROXY protocol
/// header. (Real connections through a balancer and around it are in the integration tier's <c>ProxyProtocolTests</c>.)
/// </summary>
[TestFixture]
public sealed class ProxyProtocolSourcesTests
{
    private static TcpTransport Transport(bool proxyProtocol, params string[] sources) =>
        new(new TcpTransportOptions { ProxyProtocol = proxyProtocol, ProxyProtocolSources = [.. sources.Select(IPNetwork.Parse)] });

    [TestCase("10.0.4.9", ExpectedResult = true)]
    [TestCase("10.0.4.255", ExpectedResult = true)]
    [TestCase("10.0.5.1", ExpectedResult = false)]
    [TestCase("203.0.113.7", ExpectedResult = false)]
    [TestCase("::ffff:10.0.4.9", ExpectedResult = true)]
    [TestCase("::ffff:10.0.5.1", ExpectedResult = false)]
    [TestCase("fd00::7", ExpectedResult = true)]
    [TestCase("fd00:0:0:1::7", ExpectedResult = false)]
    public bool OnlyTheNamedBalancers_MustSendAHeader(string remote) =>
        Transport(true, "10.0.4.0/24", "fd00::/64").ExpectsProxyHeaderFrom(IPAddress.Parse(remote));

    [TestCase("10.0.4.9")]
    [TestCase("203.0.113.7")]
    [TestCase("2001:db8::1")]
    public void WithNoBalancersNamed_EveryConnectionMustSendAHeader(string remote) =>
        Assert.That(Transport(true).ExpectsProxyHeaderFrom(IPAddress.Parse(remote)), Is.True);

    [Test]
    public void WithTheProxyProtocolOff_NoConnectionSendsAHeader() =>
        Assert.That(Transport(false).ExpectsProxyHeaderFrom(IPAddress.Parse("10.0.4.9")), Is.False);

    [Test]
    public void BalancersNamed_WithTheProxyProtocolOff_AreRefused()
    {
        var error = Assert.Throws<ArgumentException>(() => Transport(false, "10.0.4.0/24"));

        Assert.That(error!.Message, Does.Contain("ProxyProtocol is off"));
    }
}
