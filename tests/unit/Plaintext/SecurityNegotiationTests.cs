using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Noise;
using P2PInference.Facilities.Net.Plaintext;
using P2PInference.TestKit.Network;
using Microsoft.Extensions.Time.Testing;

namespace P2PInference.Tests.Unit.Plaintext;

/// <summary>How two hosts agree on a security protocol from <see cref="HostOptions.SecurityProtocols"/>.</summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class SecurityNegotiationTests
{
    // The clock is never moved: nothing here waits on a timer.
    private FakeTimeProvider _time = null!;
    private InMemoryNetwork _network = null!;
    private readonly List<P2PHost> _hosts = [];

    [SetUp]
    public void Create()
    {
        _time = new FakeTimeProvider();
        _network = new InMemoryNetwork(_time);
    }

    [TearDown]
    public async Task DisposeAsync()
    {
        foreach (var host in _hosts) await host.DisposeAsync();
        _hosts.Clear();
    }

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
        var stream = await dialer.OpenStreamAsync(listener.PeerId, "/test/echo/1.0.0", ct);
        await using (stream)
        {
            await stream.WriteAsync("ping"u8.ToArray(), ct);
            await stream.FlushAsync(ct);
            var echoed = new byte[4];
            await stream.ReadExactlyAsync(echoed, ct);
            Assert.That(echoed, Is.EqualTo("ping"u8.ToArray()));
        }
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
            Transports = [_network.CreateTransport("x")],
            TimeProvider = _time,
            SecurityProtocols = protocol.Length == 0 ? [] : [protocol],
        }), Throws.ArgumentException);
    }

    private async Task<P2PHost> StartAsync(string name, CancellationToken ct, params string[] securityProtocols)
    {
        var options = new HostOptions
        {
            Identity = KeyPair.Generate(),
            Transports = [_network.CreateTransport(name)],
            TimeProvider = _time,
            IdentifyOnConnect = false,
        };
        if (securityProtocols.Length > 0) options = CopyWith(options, securityProtocols);
        var host = new P2PHost(options);
        _hosts.Add(host);
        host.Handle("/test/echo/1.0.0", async (context, token) =>
        {
            var buffer = new byte[4];
            await context.Stream.ReadExactlyAsync(buffer, token);
            await context.Stream.WriteAsync(buffer, token);
            await context.Stream.FlushAsync(token);
        });
        await host.StartAsync([InMemoryNetwork.AddressOf(name)], ct);
        return host;
    }

    private static HostOptions CopyWith(HostOptions options, string[] securityProtocols) => new()
    {
        Identity = options.Identity,
        Transports = options.Transports,
        TimeProvider = options.TimeProvider,
        IdentifyOnConnect = options.IdentifyOnConnect,
        SecurityProtocols = securityProtocols,
    };
}
