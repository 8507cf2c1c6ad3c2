using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Dcutr;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Tests.Integration.Interop;

/// <summary>
/// DCUtR against js-libp2p (<c>@libp2p/dcutr</c> 3.0.28 with libp2p 3.3.11, stock options) on loopback.
/// Stock js hole-punches only to public addresses: its <c>isPublicAndDialable</c> drops loopback and
/// private ones (via <c>@libp2p/utils</c> <c>isPrivate</c>) both from a peer's identify addresses (the
/// unilateral upgrade) and from a CONNECT. On loopback js therefore never dials; what is shown here is
/// what works with it unchanged: our node upgrading a js dialer's relayed connection unilaterally, and
/// js opening the exchange with a CONNECT our node reads and answers, which js then drops for want of
/// a public address. Our side allows private addresses, as a deployment on one LAN would.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class JsDcutrInteropTests : JsInteropFixture
{
    private async Task<(P2PHost Host, DcutrService Dcutr)> StartOursAsync()
    {
        var host = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new CircuitRelayTransport(), new TcpTransport()] });
        Own(host);
        await host.StartAsync([Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")], Token);
        var dcutr = new DcutrService(host, new DcutrOptions { AllowPrivateAddresses = true });
        Own(dcutr);
        return (host, dcutr);
    }

    private static Multiaddress Circuit(Multiaddress relay) => relay.Encapsulate(Multiaddress.Parse("/p2p-circuit"));

    [Test]
    public async Task JsDialsUsThroughARelay_AndOurUnilateralUpgradeMakesItDirect()
    {
        var relay = await StartJsAsync("--relay-service");
        var (bob, dcutr) = await StartOursAsync();
        await bob.StartAsync([Circuit(Multiaddress.Parse(relay.Addrs[0]))], Token);
        var circuitAddress = $"{relay.Addrs[0]}/p2p-circuit/p2p/{bob.PeerId}";
        var js = await StartJsAsync("--relay-transport", "--dcutr");
        var jsPeer = PeerId.Parse(js.PeerId);
        var outcome = dcutr.WaitForOutcomeAsync(jsPeer, Token);

        var dialed = await js.SendAsync(new { cmd = "dial", addr = circuitAddress }, Token);
        var result = await outcome;
        await TestContext.Out.WriteLineAsync($"our outcome: {result} (error: {result.Error?.GetType().Name})");
        var peers = await js.SendAsync(new { cmd = "peers" }, Token);
        var jsSees = peers["peers"]!.AsArray()
            .Where(p => p!["peerId"]!.GetValue<string>() == bob.PeerId.ToString())
            .SelectMany(p => p!["addrs"]!.AsArray().Select(a => a!.GetValue<string>()))
            .ToArray();
        var rtt = await bob.PingAsync(jsPeer, Token);

        Assert.Multiple(() =>
        {
            Assert.That(dialed["remoteAddr"]!.GetValue<string>(), Does.Contain("/p2p-circuit"), "js reached us through the relay first");
            Assert.That(result.IsDirect && result.Unilateral, Is.True, result.ToString());
            Assert.That(result.Address!.ToString(), Does.StartWith("/ip4/127.0.0.1/tcp/"));
            Assert.That(bob.GetConnection(jsPeer)!.IsRelayed, Is.False, "new streams go on the direct connection");
            Assert.That(jsSees, Has.Some.Not.Contains("/p2p-circuit"), "js has the direct connection too");
            Assert.That(rtt, Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        });
    }

    [Test]
    public async Task JsOpensTheExchange_WeReadAndAnswerItsConnect_ThenStockJsDropsItForWantOfAPublicAddress()
    {
        var relay = await StartJsAsync("--relay-service");
        var js = await StartJsAsync("--relay-listen", relay.Addrs[0], "--dcutr");
        var jsCircuit = js.Addrs.Select(Multiaddress.Parse).Single(CircuitAddress.IsCircuit);
        var jsPeer = PeerId.Parse(js.PeerId);
        var (alice, dcutr) = await StartOursAsync();
        var outcome = dcutr.WaitForOutcomeAsync(jsPeer, Token);

        var connection = await alice.ConnectAsync(jsCircuit, Token);
        var result = await outcome;
        await TestContext.Out.WriteLineAsync($"our outcome: {result} (error: {result.Error?.GetType().Name})");
        var rtt = await alice.PingAsync(jsPeer, Token);

        Assert.Multiple(() =>
        {
            Assert.That(connection.IsRelayed, Is.True);
            Assert.That(result.IsDirect, Is.False, result.ToString());
            // js's CONNECT decoded (no DCUtR, malformed or oversized error); js then aborted the stream
            // before SYNC ("DCUtR connect message had no multiaddrs": ours are all loopback).
            Assert.That(result.Error, Is.InstanceOf<IOException>()
                .And.Not.InstanceOf<DcutrException>()
                .And.Not.InstanceOf<Facilities.Encoding.MalformedMessageException>()
                .And.Not.InstanceOf<Facilities.Encoding.MessageTooLargeException>(), result.ToString());
            Assert.That(alice.GetConnection(jsPeer)!.IsRelayed, Is.True, "the relayed connection still carries streams");
            Assert.That(rtt, Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        });
    }
}
