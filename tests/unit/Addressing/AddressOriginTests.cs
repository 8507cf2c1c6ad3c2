using P2PInference.Facilities.Addressing;

namespace P2PInference.Tests.Unit.Addressing;

/// <summary>What one party controls, as every per-address limit (connection caps, account calls, AutoNAT dial-backs) counts it.</summary>
public sealed class AddressOriginTests
{
    [TestCase("/ip4/203.0.113.9/tcp/51234", "/ip4/203.0.113.9", false)]
    [TestCase("/ip6/2001:db8:1:2:aaaa::1/tcp/4001", "/ip6/2001:db8:1:2::/64", false)]
    [TestCase("/ip6/2001:db8:1:2:bbbb::7/tcp/9", "/ip6/2001:db8:1:2::/64", false)]
    [TestCase("/ip6/::ffff:203.0.113.9/tcp/9", "/ip4/203.0.113.9", false)]
    [TestCase("/ip6/::ffff:198.51.100.1/tcp/9", "/ip4/198.51.100.1", false)]
    [TestCase("/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1", true)]
    [TestCase("/ip6/::1/tcp/4001", "/ip6/::1", true)]
    [TestCase("/memory/alice", "/memory/alice", false)]
    public void GroupsWhatOneRequesterControls(string remote, string origin, bool loopback)
    {
        Assert.That(AddressOrigin.Of(Multiaddress.Parse(remote), out var isLoopback), Is.EqualTo(origin));
        Assert.That(isLoopback, Is.EqualTo(loopback));
    }
}
