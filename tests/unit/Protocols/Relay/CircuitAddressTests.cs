using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Protocols.Relay;

namespace P2PInference.Tests.Unit.Protocols.Relay;

public sealed class CircuitAddressTests
{
    private static readonly PeerId Relay = KeyPair.FromRandom(new Random(1)).PeerId;
    private static readonly PeerId Target = KeyPair.FromRandom(new Random(2)).PeerId;

    [Test]
    public void DialAddress_SplitsIntoRelayAndTarget()
    {
        var address = Multiaddress.Parse($"/ip4/198.51.100.7/tcp/4001/p2p/{Relay}/p2p-circuit/p2p/{Target}");

        Assert.That(CircuitAddress.TryParse(address, out var circuit), Is.True);
        Assert.That(circuit!.Relay, Is.EqualTo(Relay));
        Assert.That(circuit.Target, Is.EqualTo(Target));
        Assert.That(circuit.RelayAddress.ToString(), Is.EqualTo($"/ip4/198.51.100.7/tcp/4001/p2p/{Relay}"));
        Assert.That(CircuitAddress.For(Multiaddress.Parse("/ip4/198.51.100.7/tcp/4001"), Relay, Target), Is.EqualTo(address));
        Assert.That(address.PeerId, Is.EqualTo(Target), "the trailing /p2p/ names the peer at the end of the circuit");
    }

    [Test]
    public void ListenAddress_HasNoTarget_AndNamesNoPeer()
    {
        var address = Multiaddress.Parse($"/memory/relay/p2p/{Relay}/p2p-circuit");

        Assert.That(CircuitAddress.TryParse(address, out var circuit), Is.True);
        Assert.That(circuit!.Target, Is.Null);
        Assert.That(circuit.ListenAddress, Is.EqualTo(address));
        Assert.That(address.PeerId, Is.Null, "the relay's /p2p/ is not the address's peer");
        Assert.That(address.WithoutPeerId(), Is.EqualTo(address));
        Assert.That(address.WithPeerId(Target).ToString(), Is.EqualTo($"/memory/relay/p2p/{Relay}/p2p-circuit/p2p/{Target}"));
    }

    [TestCase("/ip4/198.51.100.7/tcp/4001")]
    [TestCase("/p2p-circuit")]
    [TestCase("/ip4/198.51.100.7/tcp/4001/p2p-circuit")]
    [TestCase("/p2p/RELAY/p2p-circuit")]
    [TestCase("/ip4/198.51.100.7/tcp/4001/p2p/RELAY/p2p-circuit/ip4/1.2.3.4")]
    [TestCase("/ip4/198.51.100.7/tcp/4001/p2p/RELAY/p2p-circuit/p2p/RELAY/p2p-circuit")]
    public void OtherShapes_AreNotCircuitAddresses(string text)
    {
        var address = Multiaddress.Parse(text.Replace("RELAY", Relay.ToString(), StringComparison.Ordinal));

        Assert.That(CircuitAddress.TryParse(address, out _), Is.False);
    }
}
