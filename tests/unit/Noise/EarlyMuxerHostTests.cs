using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Noise;
using P2PInference.Facilities.Net.Plaintext;
using P2PInference.TestKit.Network;
using P2PInference.Tests.Unit.Support;

namespace P2PInference.Tests.Unit.Noise;

/// <summary>Hosts that offer the muxer in the Noise handshake (<see cref="HostOptions.EarlyMuxerNegotiation"/>), and hosts that do not.</summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class EarlyMuxerHostTests
{
    private EchoHosts _hosts = null!;

    [SetUp]
    public void Create() => _hosts = new EchoHosts();

    [TearDown]
    public ValueTask DisposeAsync() => _hosts.DisposeAsync();

    [TestCase(true, true)]
    [TestCase(true, false)]
    [TestCase(false, true)]
    [TestCase(false, false)]
    public async Task Connect_CarriesStreamsBothWays_WhetherOrNotEachSideOffersTheMuxerInTheHandshake(bool dialerOffers, bool listenerOffers, CancellationToken ct)
    {
        var listener = await StartAsync("listener", listenerOffers, ct);
        var dialer = await StartAsync("dialer", dialerOffers, ct);

        await dialer.ConnectAsync(listener.AdvertisedAddresses[0], ct);

        Assert.That(await EchoAsync(dialer, listener.PeerId, ct), Is.EqualTo("ping"u8.ToArray()));
        Assert.That(await EchoAsync(listener, dialer.PeerId, ct), Is.EqualTo("ping"u8.ToArray()));
    }

    [Test]
    public async Task Connect_ChoosesTheMuxerInTheHandshake_WhenTheDialerNegotiatesNoiseAmongOthers(CancellationToken ct)
    {
        // Offering two security protocols, the dialer negotiates before Noise rather than lazily; the muxer still rides in the handshake.
        var listener = await StartAsync("listener", offers: true, ct);
        var dialer = await StartAsync("dialer", offers: true, ct, [NoiseHandshake.ProtocolId, PlaintextHandshake.ProtocolId]);

        await dialer.ConnectAsync(listener.AdvertisedAddresses[0], ct);

        Assert.That(await EchoAsync(dialer, listener.PeerId, ct), Is.EqualTo("ping"u8.ToArray()));
    }

    [Test]
    public async Task Connect_CompletesTheListenersUpgrade_WhenTheDialerWritesNothingAfterwards(CancellationToken ct)
    {
        // Without identify the dialer sends nothing once connected: its last handshake message must not
        // wait for a first write, or the listener would never finish its upgrade.
        var listener = await StartAsync("listener", offers: true, ct);
        var dialer = await StartAsync("dialer", offers: true, ct);
        // Held back, the message would leave the listener's upgrade waiting until this test times out.
        var (_, connection) = await HostConnections.ConnectAsync(dialer, listener, ct);
        Assert.That(connection.RemotePeer, Is.EqualTo(dialer.PeerId));
        Assert.That(await EchoAsync(listener, dialer.PeerId, ct), Is.EqualTo("ping"u8.ToArray()));
    }

    private static Task<byte[]> EchoAsync(P2PHost from, PeerId to, CancellationToken ct) => EchoHosts.EchoAsync(from, to, ct);

    private Task<P2PHost> StartAsync(string name, bool offers, CancellationToken ct, IReadOnlyList<string>? securityProtocols = null) =>
        _hosts.StartAsync(name, ct, securityProtocols, earlyMuxerNegotiation: offers);
}
