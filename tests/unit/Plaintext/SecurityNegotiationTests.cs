using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Noise;
using P2PInference.Facilities.Net.Plaintext;
using P2PInference.Tests.Unit.Support;

namespace P2PInference.Tests.Unit.Plaintext;

/// <summary>How two hosts agree on a security protocol from <see cref="HostOptions.SecurityProtocols"/>.</summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class SecurityNegotiationTests
{
    // The clock is never moved: nothing here waits on a timer.
    private EchoHosts _hosts = null!;

    [SetUp]
    public void Create() => _hosts = new EchoHosts();

    [TearDown]
    public ValueTask DisposeAsync() => _hosts.DisposeAsync();

    [Test]
    public void Default_OffersNoiseOnly()
    {
        Assert.That(HostOptions.DefaultSecurityProtocols, Is.EqualTo(new[] { NoiseHandshake.ProtocolId }));
        Assert.That(new HostOptions { Identity = KeyPair.Generate(), Transports = [] }.SecurityProtocols, Is.EqualTo(new[] { NoiseHandshake.ProtocolId }));
    }

    [Test]
    public async Task Connect_AuthenticatesPeerIds_WhenBothSidesOfferOnlyPlaintext(CancellationToken ct)
    {
        var listener = await StartAsync("listener", ct, PlaintextHandshake.ProtocolId);
        var dialer = await StartAsync("dialer", ct, PlaintextHandshake.ProtocolId);

        var connection = await dialer.ConnectAsync(listener.AdvertisedAddresses[0], ct);

        Assert.That(connection.RemotePeer, Is.EqualTo(listener.PeerId));
        Assert.That(await EchoHosts.EchoAsync(dialer, listener.PeerId, ct), Is.EqualTo("ping"u8.ToArray()));
    }

    [Test]
    public async Task Connect_FallsBackToTheListenersProtocol_WhenDialerOffersSeveral(CancellationToken ct)
    {
        var listener = await StartAsync("listener", ct, PlaintextHandshake.ProtocolId);
        var dialer = await StartAsync("dialer", ct, NoiseHandshake.ProtocolId, PlaintextHandshake.ProtocolId);

        var connection = await dialer.ConnectAsync(listener.AdvertisedAddresses[0], ct);

        Assert.That(connection.RemotePeer, Is.EqualTo(listener.PeerId));
    }

    [Test]
    public async Task Connect_Fails_WhenPlaintextDialerMeetsADefaultNoiseListener(CancellationToken ct)
    {
        var listener = await StartAsync("listener", ct);
        var dialer = await StartAsync("dialer", ct, PlaintextHandshake.ProtocolId);

        var failure = Assert.ThrowsAsync<MultistreamException>(async () => await dialer.ConnectAsync(listener.AdvertisedAddresses[0], ct));

        Assert.That(failure!.Message, Does.Contain("none of"));
    }

    [Test]
    public async Task Connect_FailsWithTheListenersRefusal_WhenADefaultNoiseDialerMeetsAPlaintextListener(CancellationToken ct)
    {
        // The default dialer sends Noise's first message right behind its proposal (lazy
        // negotiation); the refusal must still reach it as such, not as a broken connection.
        var listener = await StartAsync("listener", ct, PlaintextHandshake.ProtocolId);
        var dialer = await StartAsync("dialer", ct);

        var failure = Assert.ThrowsAsync<MultistreamException>(async () => await dialer.ConnectAsync(listener.AdvertisedAddresses[0], ct));

        Assert.That(failure!.Reason, Is.EqualTo(MultistreamFailure.NoProtocolSupported));
    }

    [TestCase("/secio/1.0.0")]
    [TestCase("")]
    public void Host_RejectsSecurityProtocolsItCannotRun(string protocol)
    {
        Assert.That(() => new P2PHost(new HostOptions
        {
            Identity = KeyPair.Generate(),
            Transports = [_hosts.Network.CreateTransport("x")],
            TimeProvider = _hosts.Time,
            SecurityProtocols = protocol.Length == 0 ? [] : [protocol],
        }), Throws.ArgumentException);
    }

    private Task<P2PHost> StartAsync(string name, CancellationToken ct, params string[] securityProtocols) =>
        _hosts.StartAsync(name, ct, securityProtocols);
}
