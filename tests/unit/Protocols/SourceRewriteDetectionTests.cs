using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Protocols;

/// <summary>
/// <see cref="P2PHost.InboundSourcesRewritten"/>: a node behind a source NAT or proxy it was not told about notices that
/// peers which dialed its public address arrive from a private one, and warns its operator.
/// </summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class SourceRewriteDetectionTests
{
    // In-memory addresses have no IP, so they count as public: the address peers dial and say they dialed.
    private static readonly Multiaddress Proxy = Multiaddress.Parse("/ip4/10.0.0.9/tcp/30000");
    private readonly FakeTimeProvider _time = new();
    private List<P2PHost> _hosts = null!;
    private WarningLog _log = null!;
    private InMemoryNetwork _network = null!;

    [SetUp]
    public void Create() => (_network, _hosts, _log) = (new InMemoryNetwork(_time), [], new WarningLog());

    [TearDown]
    public async Task DisposeAsync()
    {
        foreach (var host in _hosts) await host.DisposeAsync();
    }

    private async Task<P2PHost> StartAsync(string name, CancellationToken ct, Multiaddress? inboundSource = null, bool inboundPeersArePublic = false)
    {
        ITransport transport = _network.CreateTransport(name);
        var host = new P2PHost(new HostOptions
        {
            Identity = KeyPair.Generate(),
            Transports = [inboundSource is null ? transport : new SourceRewritingTransport(transport, inboundSource)],
            TimeProvider = _time,
            InboundPeersArePublic = inboundPeersArePublic,
            LoggerFactory = _log,
        });
        _hosts.Add(host);
        await host.StartAsync([InMemoryNetwork.AddressOf(name)], ct);
        return host;
    }

    [Test]
    public async Task PeersThatDialedAPublicAddress_ArrivingFromAPrivateOne_AreReported_AndTheOperatorWarnedOnce(CancellationToken ct)
    {
        var node = await StartAsync("node", ct, inboundSource: Proxy);

        await HostConnections.ConnectAsync(await StartAsync("a", ct), node, ct, identify: true);
        Assert.That(node.InboundSourcesRewritten, Is.Null, "one peer could lie or hairpin: it takes two");
        await HostConnections.ConnectAsync(await StartAsync("b", ct), node, ct, identify: true);
        await HostConnections.ConnectAsync(await StartAsync("c", ct), node, ct, identify: true);

        Assert.That(node.InboundSourcesRewritten, Is.EqualTo(new SourceRewriteEvidence(2, InMemoryNetwork.AddressOf("node"), Proxy)));
        Assert.That(_log.Warnings, Has.Count.EqualTo(1));
        Assert.That(_log.Warnings[0], Does.Contain("Host:InboundPeersArePublic=true").And.Contain("/ip4/10.0.0.9/tcp/30000"));
    }

    [Test]
    public async Task WithInboundPeersArePublicSet_NothingIsReported(CancellationToken ct)
    {
        var node = await StartAsync("node", ct, inboundSource: Proxy, inboundPeersArePublic: true);

        foreach (var name in new[] { "a", "b", "c" }) await HostConnections.ConnectAsync(await StartAsync(name, ct), node, ct, identify: true);

        Assert.That(node.InboundSourcesRewritten, Is.Null);
        Assert.That(_log.Warnings, Is.Empty);
    }

    [Test]
    public async Task PeersArrivingFromWhereTheyDialedFrom_AreNotEvidence(CancellationToken ct)
    {
        var node = await StartAsync("node", ct);

        foreach (var name in new[] { "a", "b", "c" }) await HostConnections.ConnectAsync(await StartAsync(name, ct), node, ct, identify: true);
        // The other way: the node dialed them, so what they saw is not a dial of theirs.
        var behind = await StartAsync("behind", ct, inboundSource: Proxy);
        foreach (var peer in _hosts.Take(4)) await HostConnections.ConnectAsync(behind, peer, ct, identify: true);

        Assert.That(_hosts.Select(h => h.InboundSourcesRewritten), Is.All.Null);
        Assert.That(_log.Warnings, Is.Empty);
    }

    /// <summary>A listener behind a proxy: each inbound connection seems to come from the proxy's address.</summary>
    private sealed class SourceRewritingTransport(ITransport inner, Multiaddress source) : ITransport
    {
        public bool CanDial(Multiaddress address) => inner.CanDial(address);

        public bool CanListen(Multiaddress address) => inner.CanListen(address);

        public ValueTask<RawConnection> DialAsync(Multiaddress address, CancellationToken cancellationToken) => inner.DialAsync(address, cancellationToken);

        public async ValueTask<ITransportListener> ListenAsync(Multiaddress address, CancellationToken cancellationToken) =>
            new Listener(await inner.ListenAsync(address, cancellationToken), source);

        private sealed class Listener(ITransportListener inner, Multiaddress source) : ITransportListener
        {
            public Multiaddress Address => inner.Address;

            public async ValueTask<RawConnection> AcceptAsync(CancellationToken cancellationToken)
            {
                var raw = await inner.AcceptAsync(cancellationToken);
                return new RawConnection(raw.Stream, raw.LocalAddress, source);
            }

            public ValueTask DisposeAsync() => inner.DisposeAsync();
        }
    }

    /// <summary>The warnings hosts log, formatted.</summary>
    private sealed class WarningLog : ILoggerFactory, ILogger
    {
        private readonly List<string> _warnings = [];

        public IReadOnlyList<string> Warnings
        {
            get
            {
                lock (_warnings) return _warnings.ToArray();
            }
        }

        public ILogger CreateLogger(string categoryName) => this;

        public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException();

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            lock (_warnings) _warnings.Add(formatter(state, exception));
        }

        public void Dispose()
        {
        }
    }
}
