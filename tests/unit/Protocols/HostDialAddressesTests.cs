using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;
using P2PInference.Tests.Unit.Support;

namespace P2PInference.Tests.Unit.Protocols;

/// <summary>How a host walks a peer's known addresses when it dials: each one that does not lead to the peer is a value, and the next is tried.</summary>
[CancelAfter(10_000)]
public sealed class HostDialAddressesTests
{
    [Test]
    public async Task AnAddressWhereAnotherPeerAnswers_IsPassedOver_ForTheNextAddress(CancellationToken ct)
    {
        await using var hosts = new EchoHosts();
        var alice = await hosts.StartAsync("alice", ct);
        var bob = await hosts.StartAsync("bob", ct);
        await hosts.StartAsync("mallory", ct);
        // A DHT reply named mallory's listener as bob's, first: the handshake there finds mallory's key, not bob's.
        alice.PeerStore.AddAddresses(bob.PeerId, [InMemoryNetwork.AddressOf("mallory"), InMemoryNetwork.AddressOf("bob")]);

        var echoed = await EchoHosts.EchoAsync(alice, bob.PeerId, ct);

        Assert.That(echoed, Is.EqualTo("ping"u8.ToArray()));
        Assert.That(alice.GetConnection(bob.PeerId)?.RemotePeer, Is.EqualTo(bob.PeerId));
    }

    [Test]
    public async Task WhenNoAddressLeadsToThePeer_TheDialFails_NamingEachAddressesReason(CancellationToken ct)
    {
        await using var hosts = new EchoHosts();
        var alice = await hosts.StartAsync("alice", ct);
        var bob = await hosts.StartAsync("bob", ct);
        await hosts.StartAsync("mallory", ct);
        await bob.DisposeAsync();
        alice.PeerStore.AddAddresses(bob.PeerId, [InMemoryNetwork.AddressOf("mallory"), InMemoryNetwork.AddressOf("bob")]);

        TransportException? error = null;
        try
        {
            await alice.ConnectAsync(bob.PeerId, ct);
        }
        catch (TransportException e)
        {
            error = e;
        }

        Assert.That(error, Is.Not.Null, "no address leads to bob");
        Assert.That(error!.Message, Does.Contain(bob.PeerId.ToString()));
        Assert.That(error.InnerException, Is.TypeOf<AggregateException>());
        Assert.That(((AggregateException)error.InnerException!).InnerExceptions, Has.Count.EqualTo(2), "one reason per address");
    }
}
