using System.Net;
using P2PInference.Facilities.Addressing;

namespace P2PInference.Tests.Unit.Addressing;

/// <summary>How far an address reaches: what AutoNAT and DCUtR call private, and what a kad reply may point us at.</summary>
public sealed class AddressScopesTests
{
    [TestCase("/ip4/127.0.0.1/tcp/4001", AddressScope.Loopback)]
    [TestCase("/ip4/127.9.9.9/tcp/4001", AddressScope.Loopback)]
    [TestCase("/ip4/0.0.0.0/tcp/4001", AddressScope.Loopback)]
    [TestCase("/ip6/::1/tcp/4001", AddressScope.Loopback)]
    [TestCase("/ip6/::/tcp/4001", AddressScope.Loopback)]
    [TestCase("/ip6/::ffff:127.0.0.1/tcp/4001", AddressScope.Loopback)]
    [TestCase("/dns4/localhost/tcp/4001", AddressScope.Loopback)]
    [TestCase("/dns/api.localhost./tcp/4001", AddressScope.Loopback)]
    [TestCase("/ip4/169.254.169.254/tcp/80", AddressScope.LinkLocal)]
    [TestCase("/ip6/fe80::1/tcp/4001", AddressScope.LinkLocal)]
    [TestCase("/dns4/printer.local/tcp/80", AddressScope.LinkLocal)]
    [TestCase("/ip4/10.1.2.3/tcp/4001", AddressScope.Private)]
    [TestCase("/ip4/172.16.0.1/tcp/4001", AddressScope.Private)]
    [TestCase("/ip4/192.168.1.1/tcp/4001", AddressScope.Private)]
    [TestCase("/ip4/100.64.0.1/tcp/4001", AddressScope.Private)]
    [TestCase("/ip6/fd00::1/tcp/4001", AddressScope.Private)]
    [TestCase("/ip6/::ffff:10.0.0.1/tcp/4001", AddressScope.Private)]
    [TestCase("/ip4/172.32.0.1/tcp/4001", AddressScope.Public)]
    [TestCase("/ip4/203.0.113.1/tcp/4001", AddressScope.Public)]
    [TestCase("/ip4/8.8.8.8/tcp/4001", AddressScope.Public)]
    [TestCase("/ip6/2001:db8::1/tcp/4001", AddressScope.Public)]
    [TestCase("/dns4/boot.example.com/tcp/4001", AddressScope.Public)]
    [TestCase("/memory/alice", AddressScope.Public)]
    [TestCase("/ip4/203.0.113.1/tcp/4001/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N/p2p-circuit", AddressScope.Public)]
    [TestCase("/ip4/192.168.1.9/tcp/4001/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N/p2p-circuit", AddressScope.Private)]
    [TestCase("/ip4/0.0.0.1/tcp/4001", AddressScope.Loopback)]
    // A name is resolved by the system, which returns an IP literal as it is, in the legacy forms too.
    [TestCase("/dns4/127.0.0.1/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/127.0.0.1./tcp/22", AddressScope.Loopback)]
    [TestCase("/dns/2130706433/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/0x7f000001/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/0x7f.1/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/0177.0.0.1/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/127.1/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/1/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns6/::1/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns6/[::1]/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns6/::ffff:127.0.0.1/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/169.254.169.254/tcp/80", AddressScope.LinkLocal)]
    [TestCase("/dns6/fe80::1%eth0/tcp/80", AddressScope.LinkLocal)]
    [TestCase("/dns4/192.168.1.1/tcp/80", AddressScope.Private)]
    [TestCase("/dns4/8.8.8.8/tcp/80", AddressScope.Public)]
    // Not a host name: only a peer on this machine may name it.
    [TestCase("/dns4/1e1/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/example.123/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/0x7f.0x1/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/127.0.0.1 x/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/a..example.com/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/-a.example.com/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/b\u00fccher.example/tcp/22", AddressScope.Loopback)]
    [TestCase("/dns4/xn--bcher-kva.example/tcp/22", AddressScope.Public)]
    [TestCase("/dns4/boot_1.example.com./tcp/22", AddressScope.Public)]
    [TestCase("/dns4/relay/tcp/22", AddressScope.Public)]
    public void ScopeIsTheHosts(string address, AddressScope scope)
    {
        var parsed = Multiaddress.Parse(address);
        Assert.That(AddressScopes.Of(parsed), Is.EqualTo(scope));
        Assert.That(AddressScopes.TryGetScope(parsed.Bytes, out var fromBinary), Is.True);
        Assert.That(fromBinary, Is.EqualTo(scope), "read from the binary form without parsing it");
        var host = parsed.Components[0];
        if (host.Protocol == MultiaddressProtocol.Ip4 || host.Protocol == MultiaddressProtocol.Ip6)
            Assert.That(AddressScopes.Of(new IPAddress(host.Value.Span)), Is.EqualTo(scope));
    }

    [Test]
    public void ATruncatedBinaryAddress_HasNoScope()
    {
        var bytes = Multiaddress.Parse("/ip4/8.8.8.8/tcp/4001").Bytes[..3];

        Assert.That(AddressScopes.TryGetScope(bytes, out _), Is.False);
    }
}
