using System.Net;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Protocols.AutoNat;
using P2PInference.TestKit;

namespace P2PInference.Tests.Unit.Protocols.AutoNat;

/// <summary>The spec's rule against amplification: a server dials back only the requester's own observed host.</summary>
public sealed class DialBackAddressPolicyTests
{
    private static readonly PeerId Requester = KeyPair.FromRandom(new Random(1)).PeerId;
    private static readonly PeerId Other = KeyPair.FromRandom(new Random(2)).PeerId;
    private static readonly Multiaddress ObservedAt = Multiaddress.Parse("/ip4/203.0.113.9/tcp/51234");

    private static Multiaddress? Check(string candidate, bool allowPrivate = false, string? observed = null) =>
        DialBackAddressPolicy.Check(Multiaddress.Parse(candidate), observed is null ? ObservedAt : Multiaddress.Parse(observed), Requester, allowPrivate, out _);

    [Test]
    public void TheObservedIp_OnAnyPort_IsDialled_WithoutItsPeerId()
    {
        Assert.That(Check("/ip4/203.0.113.9/tcp/4001"), Is.EqualTo(Multiaddress.Parse("/ip4/203.0.113.9/tcp/4001")));
        Assert.That(Check($"/ip4/203.0.113.9/tcp/4001/p2p/{Requester}"), Is.EqualTo(Multiaddress.Parse("/ip4/203.0.113.9/tcp/4001")));
    }

    [TestCase("/ip4/203.0.113.10/tcp/4001", Description = "another IP: the dial would hit a third party")]
    [TestCase("/ip6/2001:db8::1/tcp/4001", Description = "another family")]
    [TestCase("/dns4/example.com/tcp/4001", Description = "a name could resolve anywhere")]
    [TestCase("/ip4/203.0.113.9/tcp/4001/p2p-circuit", Description = "relayed")]
    public void AnythingElse_IsNotDialled(string candidate) => Assert.That(Check(candidate), Is.Null);

    [Test]
    public void AnAddressNamingAnotherPeer_IsNotDialled() =>
        Assert.That(Check($"/ip4/203.0.113.9/tcp/4001/p2p/{Other}"), Is.Null);

    [Test]
    public void PrivateAddresses_OnlyWhenAllowed()
    {
        Assert.That(Check("/ip4/127.0.0.1/tcp/4001", observed: "/ip4/127.0.0.1/tcp/5000"), Is.Null);
        Assert.That(Check("/ip4/127.0.0.1/tcp/4001", allowPrivate: true, observed: "/ip4/127.0.0.1/tcp/5000"), Is.Not.Null);
    }

    [Test]
    public void InMemoryAddresses_MatchByNodeName()
    {
        Assert.That(Check("/memory/alice", observed: "/memory/alice"), Is.Not.Null);
        Assert.That(Check("/memory/bob", observed: "/memory/alice"), Is.Null);
    }

    [TestCase("127.0.0.1", true)]
    [TestCase("10.1.2.3", true)]
    [TestCase("172.16.0.1", true)]
    [TestCase("172.32.0.1", false)]
    [TestCase("192.168.1.1", true)]
    [TestCase("100.64.0.1", true)]
    [TestCase("169.254.1.1", true)]
    [TestCase("0.0.0.0", true)]
    [TestCase("::1", true)]
    [TestCase("fd00::1", true)]
    [TestCase("fe80::1", true)]
    [TestCase("192.0.2.1", false)]
    [TestCase("198.51.100.1", false)]
    [TestCase("203.0.113.1", false)]
    [TestCase("8.8.8.8", false)]
    [TestCase("2001:db8::1", false)]
    public void IsPrivate(string ip, bool expected) => Assert.That(DialBackAddressPolicy.IsPrivate(IPAddress.Parse(ip)), Is.EqualTo(expected));
}
