using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Tests.Integration.Interop;

/// <summary>
/// Circuit relay v2 against js-libp2p (<c>@libp2p/circuit-relay-v2</c> 4.2.13 with libp2p 3.3.11,
/// stock options) on loopback, both ways: our node reserves on a js relay and is reached through it
/// (by our node and by a js node), and a js node reserves on our relay and is reached through it.
/// Every relayed connection is upgraded end to end (Noise, Yamux) between the two peers.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class JsCircuitRelayInteropTests : JsInteropFixture
{
    private async Task<(P2PHost Host, CircuitRelayTransport Circuit)> StartOursAsync()
    {
        var circuit = new CircuitRelayTransport();
        var host = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [circuit, new TcpTransport()] });
        Own(host);
        await host.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], Token);
        return (host, circuit);
    }

    private static Multiaddress Circuit(Multiaddress relay) => relay.Encapsulate(Multiaddress.Parse("/p2p-circuit"));

    [Test]
    public async Task WeReserveOnAJsRelay_AndAreReachedThroughIt_ByUsAndByJs()
    {
        var relay = await StartJsAsync("--relay-service");
        var relayAddress = Multiaddress.Parse(relay.Addrs[0]);
        var (alice, aliceCircuit) = await StartOursAsync();
        var (bob, _) = await StartOursAsync();

        await alice.StartAsync([Circuit(relayAddress)], Token);
        var reservation = aliceCircuit.Reservations.Single();
        var circuitAddress = reservation.Addresses.Single(a => a.ToString().StartsWith(relay.Addrs[0], StringComparison.Ordinal));

        var connection = await bob.ConnectAsync(circuitAddress, Token);
        await bob.PingAsync(alice.PeerId, Token);
        var jsClient = await StartJsAsync("--relay-transport");
        var jsPing = await jsClient.SendAsync(new { cmd = "ping", addr = circuitAddress.ToString() }, Token);

        Assert.That(reservation.IsActive, Is.True);
        Assert.That(reservation.Expires, Is.GreaterThan(DateTimeOffset.UtcNow + TimeSpan.FromMinutes(100)), "stock js reserves for two hours");
        Assert.That(reservation.Limit.Data, Is.EqualTo(128 * 1024), "stock js data limit");
        // Stock js puts its 2-minute limit on the wire in milliseconds where the spec says seconds
        // (its own splice reads it as milliseconds): a spec-reading client sees 120000 s.
        Assert.That(reservation.Limit.Duration, Is.EqualTo(TimeSpan.FromSeconds(120_000)));
        Assert.That(circuitAddress.ToString(), Is.EqualTo($"{relay.Addrs[0]}/p2p-circuit/p2p/{alice.PeerId}"));
        Assert.That(connection.RemotePeer, Is.EqualTo(alice.PeerId));
        Assert.That(connection.IsRelayed && connection.IsLimited, Is.True);
        Assert.That(jsPing["rtts"]!.AsArray(), Has.Count.EqualTo(1), "a js node reached us through the js relay");
    }

    [Test]
    public async Task JsReservesOnOurRelay_AndWeReachItThroughIt()
    {
        var (relay, _) = await StartOursAsync();
        using var service = new RelayService(relay);
        var relayAddress = relay.AdvertisedAddresses[0];

        var js = await StartJsAsync("--relay-listen", relayAddress.ToString());
        var jsCircuit = js.Addrs.Select(Multiaddress.Parse).Single(CircuitAddress.IsCircuit);
        var (bob, _) = await StartOursAsync();
        var connection = await bob.ConnectAsync(jsCircuit, Token);
        var rtt = await bob.PingAsync(connection.RemotePeer, Token);
        var identify = await bob.IdentifyAsync(connection, Token);

        Assert.That(jsCircuit.ToString(), Is.EqualTo($"{relayAddress}/p2p-circuit/p2p/{js.PeerId}"));
        Assert.That(service.HasReservation(PeerId.Parse(js.PeerId)), Is.True);
        Assert.That(connection.RemotePeer.ToString(), Is.EqualTo(js.PeerId));
        Assert.That(connection.IsRelayed && connection.IsLimited, Is.True);
        Assert.That(rtt, Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(identify.Protocols, Does.Contain(RelayMessageCodec.StopProtocolId));
    }

    [Test]
    public async Task JsDialsUsThroughOurRelay()
    {
        var (relay, _) = await StartOursAsync();
        using var service = new RelayService(relay);
        var (alice, _) = await StartOursAsync();
        await alice.StartAsync([Circuit(relay.AdvertisedAddresses[0])], Token);
        var circuitAddress = CircuitAddress.For(relay.ListenAddresses[0], relay.PeerId, alice.PeerId);

        var js = await StartJsAsync("--relay-transport");
        var answer = await js.SendAsync(new { cmd = "ping", addr = circuitAddress.ToString(), count = 2 }, Token);

        Assert.That(answer["rtts"]!.AsArray(), Has.Count.EqualTo(2));
        // At least one: stock js never reuses a connection with limits (ours carry the relay's), so its
        // second ping dials a second circuit and aborts it as a duplicate once upgraded; under load the
        // relay may still count it here. That js reached alice through our relay is the behaviour here.
        Assert.That(service.CircuitCount, Is.GreaterThanOrEqualTo(1));
        Assert.That(alice.GetConnection(PeerId.Parse(js.PeerId))?.IsRelayed, Is.True);
    }
}
