using System.Buffers;
using System.Collections.Concurrent;
using System.Collections.Frozen;
using System.Runtime.ExceptionServices;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Protocols.Identify;
using P2PInference.Facilities.Net.Protocols.Ping;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Host;

/// <summary>
/// One per node: its identity, listeners, peer store, connections (one per peer, dials deduplicated)
/// and protocol handlers. Serves identify and ping itself.
/// </summary>
public sealed class P2PHost : IAsyncDisposable
{
    private readonly HostOptions _options;
    private readonly ILogger _logger;
    private readonly ConnectionManager _connections;
    private readonly ConcurrentDictionary<string, StreamHandler> _handlers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Task<PeerConnection>> _pendingDials = [];
    private readonly List<ITransportListener> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly CancellationTokenSource _stopping = new();
    private volatile ProtocolSet _protocols = new(FrozenSet<string>.Empty);
    private readonly InboundConnectionLimiter _inbound;
    private readonly SourceRewriteDetector _sourceRewrites;
    private readonly IdentifyPushSender _identifyPush;
    private readonly MachineAddressWatch _machineWatch;
    private readonly AnnouncedAddresses _announced;
    private volatile Func<PeerId, CancellationToken, ValueTask<bool>>? _trustedPeer;
    private readonly Action<PeerConnection, object?> _releaseInboundSlot;
    private int _pendingProxyHeaders;
    private int _disposed;

    public P2PHost(HostOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Transports.Count == 0) throw new ArgumentException("a host needs at least one transport", nameof(options));
        ConnectionUpgrader.ValidateSecurityProtocols(options.SecurityProtocols);
        ArgumentNullException.ThrowIfNull(options.RandomSource, nameof(options.RandomSource));
        if (options.InboundPeersArePublic && options.Transports.OfType<TcpTransport>().Any(t => t.ProxyProtocol))
        {
            throw new ArgumentException(
                "InboundPeersArePublic is for a proxy that hides its clients' addresses; with the PROXY protocol each client's own address is known: set only one",
                nameof(options));
        }
        if (options.AnnounceAddresses.FirstOrDefault(a => a.PeerId is { } peer && peer != options.Identity.PeerId) is { } foreign)
            throw new ArgumentException($"announce address {foreign} names another peer", nameof(options));
        if (options.AnnounceAddresses.FirstOrDefault(a => a.HasUnspecifiedHost) is { } unspecified)
            throw new ArgumentException($"announce address {unspecified} {HostOptions.AnnounceAddressProblem(unspecified)}", nameof(options));
        _options = options;
        _announced = new AnnouncedAddresses(options.AnnounceAddresses, options.MachineAddresses);
        _logger = options.LoggerFactory.CreateLogger<P2PHost>();
        _connections = new ConnectionManager(options, _logger);
        _inbound = new InboundConnectionLimiter(options);
        _releaseInboundSlot = (_, slot) => _inbound.Release((string)slot!);
        _sourceRewrites = new SourceRewriteDetector(_logger);
        _machineWatch = new MachineAddressWatch(options.WatchMachineAddresses, options.TimeProvider, OnMachineAddressesChanged);
        _identifyPush = new IdentifyPushSender(this, () => OwnIdentify(observed: null), options, _logger, _stopping.Token);
        PeerStore = new PeerStore(options.TimeProvider, options.MaxKnownPeers, logger: _logger);
        // A connected peer's protocols and addresses are what its streams and redials use; the connection caps bound them.
        PeerStore.Retain(peer => _connections.Get(peer) is not null);
        Handle(IdentifyProtocol.ProtocolId, ServeIdentifyAsync);
        Handle(IdentifyProtocol.PushProtocolId, ServeIdentifyPushAsync);
        Handle(PingProtocol.ProtocolId, (context, ct) => PingProtocol.HandleAsync(context.Stream, _options.PingTimeout, _options.TimeProvider, ct));
        foreach (var transport in options.Transports.OfType<IHostBoundTransport>())
            transport.Bind(this);
    }

    public PeerId PeerId => _options.Identity.PeerId;
    public KeyPair Identity => _options.Identity;
    public PeerStore PeerStore { get; }

    /// <summary>
    /// Set once peers that dialed this node at a public address were seen arriving from private ones: a source NAT or
    /// proxy the operator has not declared with <see cref="HostOptions.InboundPeersArePublic"/> (a warning is logged then).
    /// </summary>
    public SourceRewriteEvidence? InboundSourcesRewritten => _sourceRewrites.Evidence;
    public TimeProvider TimeProvider => _options.TimeProvider;

    /// <summary>The host's source of unpredictable bytes (<see cref="HostOptions.RandomSource"/>), for the layers built on it.</summary>
    public IRandomSource RandomSource => _options.RandomSource;

    /// <summary>The bound listen addresses, without the <c>/p2p/</c> suffix.</summary>
    public IReadOnlyList<Multiaddress> ListenAddresses
    {
        get
        {
            lock (_listeners) return _listeners.Select(l => l.Address).ToArray();
        }
    }

    /// <summary>
    /// What peers are told to dial this node at, without the <c>/p2p/</c> suffix: <see cref="HostOptions.AnnounceAddresses"/>,
    /// then <see cref="ConfirmedAddresses"/>, then the listen addresses, one on 0.0.0.0 or :: given as each of the
    /// machine's addresses of that family. Identify, the DHT and relay reservations carry these.
    /// </summary>
    public IReadOnlyList<Multiaddress> AnnouncedAddresses => _announced.All;

    /// <summary><see cref="AnnouncedAddresses"/> as others dial them: each ending in <c>/p2p/&lt;PeerId&gt;</c>.</summary>
    public IReadOnlyList<Multiaddress> AdvertisedAddresses => AnnouncedAddresses.Select(a => a.WithPeerId(PeerId)).ToArray();

    /// <summary>The operator's addresses for this node (<see cref="HostOptions.AnnounceAddresses"/>), without <c>/p2p/</c>.</summary>
    public IReadOnlyList<Multiaddress> AnnounceAddresses => _announced.Announce;

    /// <summary>Addresses others were found to reach this node at, other than its listen addresses (set by AutoNAT: <see cref="SetConfirmedAddresses"/>).</summary>
    public IReadOnlyList<Multiaddress> ConfirmedAddresses => _announced.Confirmed;

    /// <summary>
    /// Raised when <see cref="AnnouncedAddresses"/> change (confirmed addresses, listeners, the machine's addresses behind a
    /// listener on 0.0.0.0), so that records of this node elsewhere (the DHT's) can be renewed.
    /// </summary>
    public event Action? AnnouncedAddressesChanged;

    /// <summary>
    /// Replaces the addresses peers were found to reach this node at (AutoNAT's dial-backs: a NAT's mapping of a listen
    /// port, a public IP in front of a private one). They are announced after the operator's and before the listen
    /// addresses; connected peers hear of a change by identify push.
    /// </summary>
    public void SetConfirmedAddresses(IReadOnlyList<Multiaddress> addresses)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        if (!_announced.SetConfirmed(addresses)) return;
        _logger.LogInformation("confirmed addresses: {Addresses}", addresses.Count == 0 ? "none" : string.Join(", ", addresses));
        AnnouncedChanged();
    }

    private void OnMachineAddressesChanged()
    {
        if (_disposed != 0 || !_announced.RefreshMachineAddresses()) return;
        _logger.LogInformation("the machine's addresses changed; announcing {Addresses}", string.Join(", ", AnnouncedAddresses));
        AnnouncedChanged();
    }

    private void AnnouncedChanged()
    {
        SelfChanged();
        EventSubscribers.Raise(AnnouncedAddressesChanged, _logger, $"{nameof(P2PHost)}.{nameof(AnnouncedAddressesChanged)}");
    }

    public IReadOnlyCollection<string> Protocols => _protocols.Ids;

    public IReadOnlyList<PeerConnection> Connections => _connections.All;

    // Each subscriber is called on its own: one that throws is logged and stops neither the others nor the connection.
    public event Action<PeerConnection>? PeerConnected
    {
        add => _connections.Connected += value;
        remove => _connections.Connected -= value;
    }

    public event Action<PeerConnection>? PeerDisconnected
    {
        add => _connections.Disconnected += value;
        remove => _connections.Disconnected -= value;
    }

    public void Handle(string protocolId, StreamHandler handler)
    {
        ArgumentException.ThrowIfNullOrEmpty(protocolId);
        ArgumentNullException.ThrowIfNull(handler);
        var added = _handlers.TryAdd(protocolId, handler);
        if (!added) _handlers[protocolId] = handler;
        _protocols = new(_handlers.Keys.ToFrozenSet(StringComparer.Ordinal));
        MultistreamSelect.AddKnownId(protocolId);
        if (added) SelfChanged();
    }

    public bool Unhandle(string protocolId)
    {
        var removed = _handlers.TryRemove(protocolId, out _);
        _protocols = new(_handlers.Keys.ToFrozenSet(StringComparer.Ordinal));
        if (removed) SelfChanged();
        return removed;
    }

    /// <summary>Identify push rounds sent so far (<see cref="IdentifyPushSender"/>).</summary>
    internal int IdentifyPushRounds => _identifyPush.Rounds;

    /// <summary>Our identify changed (an address or a protocol): connected peers that take identify push hear of it.</summary>
    private void SelfChanged()
    {
        // Before the first connection nobody is told anything, and a host being built must not start work.
        if (_connections.Count > 0) _identifyPush.Request();
    }

    /// <summary>Binds each address on the first transport that can listen on it and starts accepting.</summary>
    /// <exception cref="TransportException">No transport can listen on an address, or binding failed.</exception>
    public async Task StartAsync(IEnumerable<Multiaddress> listenAddresses, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        foreach (var address in listenAddresses)
        {
            var transport = _options.Transports.FirstOrDefault(t => t.CanListen(address))
                ?? throw new TransportException($"no transport can listen on {address}");
            var listener = await transport.ListenAsync(address, cancellationToken);
            bool announcedChanged;
            lock (_listeners)
            {
                _listeners.Add(listener);
                _acceptLoops.Add(AcceptLoopAsync(listener));
                announcedChanged = _announced.SetListen(_listeners.Select(l => l.Address).ToArray());
            }
            _logger.LogInformation("listening on {Address}", listener.Address.WithPeerId(PeerId));
            if (listener.Address.HasUnspecifiedHost) _machineWatch.Start();
            if (announcedChanged) AnnouncedChanged();
        }
    }

    /// <summary>
    /// Stops listening on <paramref name="address"/> (as <see cref="ListenAddresses"/> lists it): the
    /// listener closes (a circuit listener gives up its reservation) and the address is no longer
    /// advertised. Connections already accepted through it stay open.
    /// </summary>
    /// <returns>False when the host was not listening there.</returns>
    public async Task<bool> StopListeningAsync(Multiaddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        ITransportListener? listener;
        bool announcedChanged;
        lock (_listeners)
        {
            listener = _listeners.FirstOrDefault(l => l.Address.Equals(address));
            if (listener is null) return false;
            _listeners.Remove(listener);
            announcedChanged = _announced.SetListen(_listeners.Select(l => l.Address).ToArray());
        }
        await listener.DisposeAsync();
        _logger.LogInformation("stopped listening on {Address}", address.WithPeerId(PeerId));
        if (announcedChanged) AnnouncedChanged();
        return true;
    }

    public PeerConnection? GetConnection(PeerId peer) => _connections.Get(peer);

    /// <summary>Connects to the address; a trailing <c>/p2p/&lt;id&gt;</c> is checked against the remote's key.</summary>
    public Task<PeerConnection> ConnectAsync(Multiaddress address, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(address);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var peer = address.PeerId;
        if (peer is not null)
        {
            if (peer == PeerId) throw new TransportException($"refusing to dial ourselves ({address})");
            // The caller's own address: its name may resolve anywhere, now and when we dial it again.
            PeerStore.AddAddresses(peer, [address], AddressSource.ThirdParty, AddressScope.Loopback);
            var existing = _connections.Get(peer);
            if (existing is not null) return Task.FromResult(existing);
        }
        return SharedDial(peer?.ToString() ?? address.ToString(), peer, () => DialAddressesAsync([address.WithoutPeerId()], peer, given: true))
            .WaitAsync(cancellationToken);
    }

    /// <summary>Returns the open connection to <paramref name="peer"/> or dials its known addresses.</summary>
    public Task<PeerConnection> ConnectAsync(PeerId peer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(peer);
        if (BeforeDial(peer, out var existing) is { } refusal) throw refusal;
        return existing is not null ? Task.FromResult(existing) : SharedDialToPeer(peer).WaitAsync(cancellationToken);
    }

    /// <summary>What both ways to connect to a peer check first: the reason not to dial, or null and the open connection if any.</summary>
    private Exception? BeforeDial(PeerId peer, out PeerConnection? existing)
    {
        existing = null;
        if (_disposed != 0) return new ObjectDisposedException(nameof(P2PHost));
        if (peer == PeerId) return new TransportException("refusing to dial ourselves");
        existing = _connections.Get(peer);
        return null;
    }

    /// <summary>
    /// <see cref="ConnectAsync(PeerId, CancellationToken)"/> that returns a failure instead of throwing it: the dial's
    /// error (<see cref="TransportException"/> when nothing answers), or an <see cref="OperationCanceledException"/> when
    /// <paramref name="cancellationToken"/> fires first.
    /// </summary>
    private async Task<(PeerConnection? Connection, Exception? Error)> TryConnectAsync(PeerId peer, CancellationToken cancellationToken)
    {
        if (BeforeDial(peer, out var existing) is { } refusal) return (null, refusal);
        if (existing is not null) return (existing, null);
        // Started even when the caller has given up already, as ConnectAsync does: the connection outlives the request.
        var dial = SharedDialToPeer(peer);
        // Awaited without throwing: a dial to a peer that is gone, or one its caller stopped waiting for,
        // is routine for a DHT lookup, and each rethrow through an async frame costs tens of microseconds.
        if (!dial.IsCompleted)
            await ((Task)dial).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.ContinueOnCapturedContext | ConfigureAwaitOptions.SuppressThrowing);
        if (dial.IsCompletedSuccessfully) return (dial.Result, null);
        if (!dial.IsCompleted) return (null, new OperationCanceledException(cancellationToken));
        return (null, Failure(dial));
    }

    private Task<PeerConnection> SharedDialToPeer(PeerId peer) => SharedDial(peer.ToString(), peer, () =>
    {
        var addresses = PeerStore.GetAddresses(peer);
        return addresses.Count == 0
            ? Task.FromResult(new DialAttempt(null, new TransportException($"no known address for peer {peer}")))
            : DialAddressesAsync(addresses, peer, given: false);
    });

    public async Task<YamuxStream> OpenStreamAsync(PeerId peer, string protocol, CancellationToken cancellationToken)
    {
        var (stream, _) = await OpenStreamAsync(peer, [protocol], cancellationToken);
        return stream;
    }

    /// <summary>
    /// <see cref="OpenStreamAsync(PeerId, string, CancellationToken)"/> for callers to whom an unreachable peer is
    /// routine (a DHT lookup asks peers that may be gone): the failure comes back in the result, not thrown.
    /// </summary>
    /// <returns>The stream, or null and why not: a <see cref="TransportException"/> for a failed dial, an
    /// <see cref="OperationCanceledException"/> when cancelled, or the negotiation's error.</returns>
    public async Task<(YamuxStream? Stream, Exception? Error)> TryOpenStreamAsync(PeerId peer, string protocol, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(peer);
        ArgumentNullException.ThrowIfNull(protocol);
        var (stream, _, error) = await TryOpenStreamAsync(peer, [protocol], cancellationToken);
        return (stream, error);
    }

    /// <remarks>
    /// A connection that closes while the stream is being negotiated (the remote closed it as idle at
    /// that moment, or it was already dead: the peer restarted and the reset had not arrived yet) costs
    /// one more try, on a connection dialed anew. Nothing of the caller's protocol was sent, so the
    /// retry is safe for every protocol.
    /// </remarks>
    public async Task<(YamuxStream Stream, string Protocol)> OpenStreamAsync(PeerId peer, IReadOnlyList<string> protocols, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(peer);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var (stream, protocol, error) = await TryOpenStreamAsync(peer, protocols, cancellationToken);
        if (stream is null) ExceptionDispatchInfo.Throw(error!);
        return (stream, protocol!);
    }

    private async Task<(YamuxStream? Stream, string? Protocol, Exception? Error)> TryOpenStreamAsync(PeerId peer, IReadOnlyList<string> protocols,
        CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            var (connection, dialError) = await TryConnectAsync(peer, cancellationToken);
            if (connection is null) return (null, null, dialError);
            using var timeout = new CancellationTokenSource(_options.StreamNegotiationTimeout, _options.TimeProvider);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            try
            {
                var (stream, protocol) = await connection.OpenStreamAsync(protocols, linked.Token);
                return (stream, protocol, null);
            }
            catch (Exception e) when (attempt == 0 && !linked.IsCancellationRequested && (connection.IsClosed || connection.IsRetired))
            {
                _logger.LogDebug(e, "connection {Connection} closed while a stream was opened on it; trying a new one", connection);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return (null, null, e);
            }
        }
    }

    /// <summary>
    /// Opens a stream for <paramref name="protocol"/> with lazy negotiation: the proposal and
    /// <paramref name="firstData"/> leave in one write, without waiting for the listener's answer.
    /// Before reading, call <see cref="ReadLazyAnswerAsync"/>; a refusal surfaces there.
    /// </summary>
    public async Task<YamuxStream> OpenStreamLazyAsync(PeerId peer, string protocol, ReadOnlyMemory<byte> firstData, CancellationToken cancellationToken)
    {
        var connection = await ConnectAsync(peer, cancellationToken);
        return await connection.OpenStreamLazyAsync(protocol, firstData, cancellationToken);
    }

    /// <summary>
    /// <see cref="OpenStreamLazyAsync"/> for callers to whom an unreachable peer is routine (a DHT lookup
    /// asks peers that may be gone): a failed dial or a cancellation comes back in the result, not thrown.
    /// A connection found closed before the proposal left costs one more try on a connection dialed
    /// anew: nothing was sent on it.
    /// </summary>
    /// <returns>
    /// The stream, its proposal and <paramref name="firstData"/> written, and the connection it is on (whose
    /// address tells what the answer may be trusted with); or null and why not.
    /// </returns>
    public async Task<(YamuxStream? Stream, PeerConnection? Connection, Exception? Error)> TryOpenStreamLazyAsync(PeerId peer, string protocol,
        ReadOnlyMemory<byte> firstData, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(peer);
        ArgumentNullException.ThrowIfNull(protocol);
        for (var attempt = 0; ; attempt++)
        {
            var (connection, dialError) = await TryConnectAsync(peer, cancellationToken);
            if (connection is null) return (null, null, dialError);
            try
            {
                var stream = await connection.TryOpenStreamLazyAsync(protocol, firstData, cancellationToken);
                if (stream is not null) return (stream, connection, null);
                if (attempt > 0) return (null, null, new TransportException($"the connection to {peer} closed before the stream could open"));
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return (null, null, e);
            }
        }
    }

    /// <summary>
    /// Reads the listener's answer to a stream opened with <see cref="OpenStreamLazyAsync"/>, within
    /// <see cref="HostOptions.StreamNegotiationTimeout"/>; afterwards the stream carries the protocol's bytes.
    /// </summary>
    /// <exception cref="MultistreamException">"na" (<see cref="MultistreamFailure.NoProtocolSupported"/>), another protocol echoed, no answer in time.</exception>
    public Task ReadLazyAnswerAsync(YamuxStream stream, string protocol, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var answer = MultistreamSelect.ReadLazyAnswerAsync(stream, protocol, cancellationToken);
        // An answer already here needs no timer; one that must be waited for gets the deadline now.
        return answer.IsCompletedSuccessfully ? Task.CompletedTask : WithLazyAnswerTimeoutAsync(answer, stream, protocol, cancellationToken);
    }

    private async Task WithLazyAnswerTimeoutAsync(ValueTask answer, YamuxStream stream, string protocol, CancellationToken cancellationToken)
    {
        var deadline = new NegotiationDeadline(stream);
        using (_options.TimeProvider.CreateTimer(s_negotiationExpired, deadline, _options.StreamNegotiationTimeout, Timeout.InfiniteTimeSpan))
        {
            try
            {
                await answer;
            }
            // The expired deadline reset the stream, so the read failed with the reset: report the timeout.
            catch (Exception e) when (deadline.Finish() && !cancellationToken.IsCancellationRequested && e is not OutOfMemoryException)
            {
                throw new MultistreamException(MultistreamFailure.TimedOut,
                    $"the listener did not answer the proposal '{protocol}' within {_options.StreamNegotiationTimeout}", e);
            }
            finally
            {
                _ = deadline.Finish();
            }
        }
    }

    public async Task<TimeSpan> PingAsync(PeerId peer, CancellationToken cancellationToken)
    {
        var stream = await OpenStreamAsync(peer, PingProtocol.ProtocolId, cancellationToken);
        await using (stream)
            return await PingProtocol.PingAsync(stream, _options.TimeProvider, _options.RandomSource, cancellationToken);
    }

    /// <summary>What <paramref name="peer"/> told about itself on our connection to it (dialed if there is none).</summary>
    /// <exception cref="IdentifyException">The connection's identify exchange failed, timed out, or the connection closed first.</exception>
    public async Task<IdentifyInfo> IdentifyAsync(PeerId peer, CancellationToken cancellationToken)
    {
        var connection = await ConnectAsync(peer, cancellationToken);
        return await IdentifyAsync(connection, cancellationToken);
    }

    /// <summary>
    /// The result of <paramref name="connection"/>'s one identify exchange: waits for it while it
    /// runs (it starts on connect, or now if <see cref="HostOptions.IdentifyOnConnect"/> is off).
    /// Never opens a second identify stream. Cancelling stops this wait only, not the exchange.
    /// </summary>
    /// <exception cref="IdentifyException">The exchange failed, timed out, or the connection closed first; the connection stays usable if open.</exception>
    public Task<IdentifyInfo> IdentifyAsync(PeerConnection connection, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return WaitForIdentifyAsync(connection.GetOrStartIdentify(RunIdentifyAsync), cancellationToken);
    }

    private static async Task<IdentifyInfo> WaitForIdentifyAsync(Task<IdentifyOutcome> identify, CancellationToken cancellationToken) =>
        (await identify.WaitOrCancelAsync(cancellationToken)).GetInfo();

    public async Task DisconnectAsync(PeerId peer)
    {
        foreach (var c in _connections.All.Where(c => c.RemotePeer == peer))
            await c.DisposeAsync();
    }

    /// <summary>Whether one of the host's transports can dial <paramref name="address"/>.</summary>
    public bool CanDial(Multiaddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        return _options.Transports.Any(t => t.CanDial(address));
    }

    /// <summary>
    /// Dials <paramref name="address"/> on a connection of its own, proving <paramref name="identity"/>
    /// rather than the host's key, completes the handshake (which proves the remote is
    /// <paramref name="expected"/>) and closes it unused. For reachability checks (AutoNAT
    /// dial-backs): the connection the peer opened itself proves nothing, and a second connection
    /// under the host's own key would make the peer retire one of the two it then has with us.
    /// </summary>
    /// <exception cref="TransportException">No transport can dial the address, or the dial failed.</exception>
    /// <exception cref="IOException">The handshake failed or another peer answered.</exception>
    /// <exception cref="TimeoutException">The handshake took longer than <see cref="HostOptions.UpgradeTimeout"/>.</exception>
    public async Task ProbeDialAsync(Multiaddress address, PeerId expected, KeyPair identity, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(address);
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(identity);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var target = address.WithoutPeerId();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        // The AutoNAT server's dial-back policy has checked the address (an IP, the client's own).
        var raw = await DialTransportAsync(target, AddressScope.Loopback, linked.Token);
        var connection = await ConnectionUpgrader.UpgradeAsync(raw, ConnectionDirection.Outbound, expected, _options, linked.Token, identity);
        await connection.DisposeAsync();
    }

    /// <summary>
    /// Dials <paramref name="address"/> for a new direct connection to <paramref name="peer"/>, even while
    /// another (a relayed one) is open, and upgrades it in <paramref name="role"/>:
    /// <see cref="ConnectionDirection.Outbound"/> as any dial, <see cref="ConnectionDirection.Inbound"/> as
    /// the responder (multistream listener, Noise responder, Yamux server). A TCP simultaneous open gives
    /// both ends a connection they each dialed, so the hole-punching protocol (DCUtR) has one of them
    /// respond; the connection's <see cref="PeerConnection.Direction"/> is the role played. Not deduplicated.
    /// </summary>
    /// <exception cref="TransportException">The address is relayed, no transport can dial it, or the dial failed.</exception>
    /// <exception cref="IOException">The handshake failed or another peer answered.</exception>
    /// <exception cref="TimeoutException">The handshake took longer than <see cref="HostOptions.UpgradeTimeout"/>.</exception>
    public async Task<PeerConnection> DialDirectAsync(Multiaddress address, PeerId peer, ConnectionDirection role, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(address);
        ArgumentNullException.ThrowIfNull(peer);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (peer == PeerId) throw new TransportException($"refusing to dial ourselves ({address})");
        var target = address.WithoutPeerId();
        if (target.Has(MultiaddressProtocol.P2pCircuit)) throw new TransportException($"not a direct address: {address}");
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        // A name resolves within the scope it claims: a hole punch to a public name must not land on our LAN.
        var scope = AddressScopes.Of(target);
        var raw = await DialTransportAsync(target, scope, linked.Token);
        var connection = await ConnectionUpgrader.UpgradeAsync(raw, role, peer, _options, linked.Token);
        await AdoptAsync(connection);
        PeerStore.AddAddresses(peer, [target], AddressSource.Self, scope);
        return connection;
    }

    /// <summary>
    /// The dial under way to <paramref name="key"/>, or a new one. It runs on the host's lifetime: one caller giving
    /// up does not cancel it for the others (each waits with its own token).
    /// </summary>
    private Task<PeerConnection> SharedDial(string key, PeerId? peer, Func<Task<DialAttempt>> dial)
    {
        lock (_pendingDials)
        {
            if (_pendingDials.TryGetValue(key, out var task)) return task;
            // The caller found no connection a moment ago, but a dial may have ended since: it adopts its
            // connection before it leaves this table, so looking again under the lock finds one or the
            // other. Without it, 16 concurrent connects over TCP under load once made two connections.
            if (peer is not null && _connections.Get(peer) is { } existing) return Task.FromResult(existing);
            var result = new TaskCompletionSource<PeerConnection>();
            task = result.Task;
            _pendingDials[key] = task;
            _ = RunDialAsync(key, dial, result);
            return task;
        }
    }

    /// <summary>Runs a shared dial and completes its task; a failure faults it without being rethrown on the way.</summary>
    private async Task RunDialAsync(string key, Func<Task<DialAttempt>> dial, TaskCompletionSource<PeerConnection> result)
    {
        DialAttempt attempt;
        try
        {
            await Task.Yield();
            attempt = await dial();
        }
        catch (Exception e)
        {
            attempt = new DialAttempt(null, e);
        }
        lock (_pendingDials) _pendingDials.Remove(key);
        if (attempt.Connection is { } connection) result.SetResult(connection);
        else if (attempt.Error is OperationCanceledException cancelled) result.SetCanceled(cancelled.CancellationToken);
        else
        {
            result.SetException(attempt.Error!);
            // Observed here: every waiter may have given up on it already, and the finalizer would report it.
            _ = result.Task.Exception;
        }
    }

    /// <summary>A dial's outcome: the connection, or why there is none (a refused dial is routine, so it is not thrown).</summary>
    private readonly record struct DialAttempt(PeerConnection? Connection, Exception? Error);

    /// <param name="given">
    /// Whether the caller gave the addresses (any name in them may resolve anywhere), rather than the peer store
    /// (a name resolves within the scope it was heard over, <see cref="PeerStore.NarrowestDialScope"/>).
    /// </param>
    private async Task<DialAttempt> DialAddressesAsync(IReadOnlyList<Multiaddress> addresses, PeerId? expected, bool given)
    {
        List<Exception>? errors = null;
        foreach (var known in addresses)
        {
            var address = WithCircuitTarget(known, expected);
            var scope = given || expected is null ? AddressScope.Loopback : PeerStore.NarrowestDialScope(expected, known);
            Task<RawConnection> dialing;
            try
            {
                dialing = DialTransportAsync(address, scope, _stopping.Token).AsTask();
            }
            catch (TransportException e)
            {
                (errors ??= []).Add(e);
                continue;
            }
            await ((Task)dialing).ConfigureAwait(ConfigureAwaitOptions.ContinueOnCapturedContext | ConfigureAwaitOptions.SuppressThrowing);
            if (!dialing.IsCompletedSuccessfully)
            {
                // A refused or unreachable address is taken as a value; anything else (the host stopping) propagates.
                if (dialing.Exception?.InnerException is not TransportException refused) return new DialAttempt(null, Failure(dialing));
                (errors ??= []).Add(refused);
                continue;
            }
            PeerConnection connection;
            try
            {
                connection = await ConnectionUpgrader.UpgradeAsync(dialing.Result, ConnectionDirection.Outbound, expected, _options, _stopping.Token);
            }
            catch (Exception e) when (!_stopping.IsCancellationRequested && e is not (OperationCanceledException or OutOfMemoryException))
            {
                // Something answered at this address but did not become the peer: another libp2p node (a stale
                // or made-up address a DHT reply named), or one that failed the handshake. Another of the peer's
                // addresses may still be it; giving up here let one bad address cut us off from the peer.
                (errors ??= []).Add(e);
                continue;
            }
            await AdoptAsync(connection);
            PeerStore.AddAddresses(connection.RemotePeer, [address], AddressSource.Self, scope);
            return new DialAttempt(_connections.Get(connection.RemotePeer) ?? connection, null);
        }
        if (errors is null) return new DialAttempt(null, new TransportException($"no address to dial for {expected?.ToString() ?? "the peer"}"));
        if (errors.Count == 1) return new DialAttempt(null, errors[0]);
        return new DialAttempt(null, new TransportException($"could not reach {expected?.ToString() ?? "the peer"}: "
            + string.Join("; ", errors.Select(e => e.Message)), new AggregateException(errors)));
    }

    private static Exception Failure(Task task) =>
        task.IsCanceled ? new TaskCanceledException(task) : task.Exception!.InnerException ?? task.Exception;

    /// <summary>
    /// A raw connection to <paramref name="address"/> from the first transport that can dial it, at an IP
    /// address of <paramref name="narrowestScope"/> or wider.
    /// </summary>
    /// <exception cref="TransportException">No transport can dial the address, or the dial failed.</exception>
    private ValueTask<RawConnection> DialTransportAsync(Multiaddress address, AddressScope narrowestScope, CancellationToken cancellationToken)
    {
        var transport = _options.Transports.FirstOrDefault(t => t.CanDial(address))
            ?? throw new TransportException($"no transport can dial {address}");
        return transport.DialAsync(address, narrowestScope, cancellationToken);
    }

    /// <summary>
    /// A relay's circuit address (<c>…/p2p/RELAY/p2p-circuit</c>), as peers advertise it and the peer
    /// store keeps it, names no target: the circuit transport needs the peer at its end.
    /// </summary>
    private static Multiaddress WithCircuitTarget(Multiaddress address, PeerId? target) =>
        target is not null && address.Components.Count > 0 && address.Components[^1].Protocol.Code == MultiaddressProtocol.P2pCircuit.Code
            ? address.WithPeerId(target)
            : address;

    private async Task AdoptAsync(PeerConnection connection)
    {
        if (!_connections.Add(connection))
        {
            await connection.DisposeAsync();
            throw new ObjectDisposedException(nameof(P2PHost), "the host is stopping");
        }
        _ = AcceptStreamsAsync(connection);
        if (!_options.IdentifyOnConnect) return;
        var identify = connection.GetOrStartIdentify(RunIdentifyAsync);
        if (_options.CloseInboundWithoutIdentify && connection.Direction == ConnectionDirection.Inbound)
            _ = CloseIfIdentifyTimesOutAsync(connection, identify);
    }

    private async Task CloseIfIdentifyTimesOutAsync(PeerConnection connection, Task<IdentifyOutcome> identify)
    {
        // Other failures were logged where they happened; a wrong answer or a closed connection is not a stall.
        if ((await identify).TimedOut)
        {
            _logger.LogDebug("closing the inbound connection from {Peer}: no identify answer within {Timeout}", connection.RemotePeer, _options.IdentifyTimeout);
            await connection.DisposeAsync();
        }
    }

    private async Task<IdentifyOutcome> RunIdentifyAsync(PeerConnection connection)
    {
        // The caller holds the connection's identify lock until this first await.
        await Task.Yield();
        // The connection keeps this task for its whole life; what the exchange needs (its timeout and
        // cancellation sources) lives in the state of another method, released when it ends.
        var outcome = await IdentifyAsync(connection);
        if (outcome.Failure is not null) _logger.LogDebug(outcome.Cause, "identify of {Peer} failed: {Reason}", connection.RemotePeer, outcome.Failure);
        return outcome;
    }

    private async Task<IdentifyOutcome> IdentifyAsync(PeerConnection connection)
    {
        var peer = connection.RemotePeer;
        // A connection closed (or closing) at once, as in a dial-and-close, is the common failure:
        // it ends in an outcome, not in an exception thrown through every layer of a stream open.
        if (!connection.Session.CanOpenStreams)
            return ClosedBeforeIdentify(peer);
        CancellationToken stopping;
        try
        {
            stopping = _stopping.Token;
        }
        catch (ObjectDisposedException e)
        {
            return IdentifyOutcome.Failed($"identify of {peer} stopped: the host has stopped", e);
        }
        using var timeout = new CancellationTokenSource(_options.IdentifyTimeout, _options.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(stopping, timeout.Token);
        try
        {
            IdentifyInfo? info;
            // A stream need not notice its connection closing; the connection's end cancels the exchange.
            using (connection.OnClosed(s_cancelScope, linked))
                info = await ExchangeIdentifyAsync(connection, linked.Token);
            if (info is null)
            {
                // The exchange stopped waiting without an exception; its tokens and the connection say why.
                if (timeout.IsCancellationRequested && !stopping.IsCancellationRequested && !connection.IsClosed)
                    return IdentifyOutcome.Failed($"{peer} did not answer identify within {_options.IdentifyTimeout}", new TimeoutException($"no identify answer within {_options.IdentifyTimeout}"));
                if (stopping.IsCancellationRequested)
                    return IdentifyOutcome.Failed($"identify of {peer} stopped: the host is stopping");
                return connection.IsClosed ? ClosedBeforeIdentify(peer) : IdentifyOutcome.Failed($"{peer} reset the identify stream");
            }
            // Only the listen addresses a peer reached at its connection's scope may name (a public peer cannot
            // put our loopback or LAN in the peer store, from which we dial and answer kad); the outcome keeps
            // them all (DCUtR dials a relayed peer's own, by its own rule).
            RecordIdentify(connection, info, push: false);
            _sourceRewrites.Observe(connection, info);
            return IdentifyOutcome.Succeeded(info);
        }
        catch (IdentifyException e)
        {
            return IdentifyOutcome.Failed(e);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            if (e is OperationCanceledException && connection.Completion.IsCompleted && !timeout.IsCancellationRequested && !stopping.IsCancellationRequested)
                return ClosedBeforeIdentify(peer);
            if (e is OperationCanceledException && timeout.IsCancellationRequested && !stopping.IsCancellationRequested)
                return IdentifyOutcome.Failed($"{peer} did not answer identify within {_options.IdentifyTimeout}", new TimeoutException(e.Message, e));
            if (e is OperationCanceledException)
                return IdentifyOutcome.Failed($"identify of {peer} stopped: the host is stopping", e);
            return IdentifyOutcome.Failed($"identify of {peer} failed: {e.Message}", e);
        }
    }

    /// <summary>
    /// What a peer's identify answer or push tells the peer store. Its listen addresses replace those it listed
    /// before. A push may carry only what changed (the spec: a missing field keeps what is known), so there an empty
    /// protocol list or agent version changes nothing; an answer's replaces them.
    /// </summary>
    private void RecordIdentify(PeerConnection connection, IdentifyInfo info, bool push)
    {
        var heardOver = connection.RemoteScope;
        var peer = connection.RemotePeer;
        PeerStore.SetListenAddresses(peer, info.ListenAddresses, NamedAddresses.Restrict(info.ListenAddresses, heardOver, int.MaxValue), heardOver);
        var keepProtocols = push && info.Protocols.Count == 0;
        var keepAgent = push && string.IsNullOrEmpty(info.AgentVersion);
        if (keepProtocols && keepAgent) return;
        PeerStore.SetProtocols(peer, keepProtocols ? PeerStore.GetProtocols(peer) : info.Protocols,
            keepAgent ? PeerStore.GetAgentVersion(peer) : info.AgentVersion);
    }

    private static IdentifyOutcome ClosedBeforeIdentify(PeerId peer) => IdentifyOutcome.Failed($"the connection to {peer} closed before identify finished");

    /// <summary>The remote's identify answer; null when a wait ended first (the stream reset, the connection closed, the token cancelled).</summary>
    private async Task<IdentifyInfo?> ExchangeIdentifyAsync(PeerConnection connection, CancellationToken cancellationToken)
    {
        // The SYN and the proposal leave in one write, and each read waits first without throwing, so a
        // connection its dialer closes at once (a dial-and-close) ends this exchange without an exception.
        // The answer to a proposal comes in one write (ours and js-libp2p's), so one wait covers it.
        var stream = await connection.TryOpenStreamLazyAsync(IdentifyProtocol.ProtocolId, ReadOnlyMemory<byte>.Empty, cancellationToken);
        if (stream is null) return null;
        await using (stream)
        {
            if (!await ReadableAsync(stream, connection, cancellationToken)) return null;
            await MultistreamSelect.ReadLazyAnswerAsync(stream, IdentifyProtocol.ProtocolId, cancellationToken);
            if (!await ReadableAsync(stream, connection, cancellationToken)) return null;
            return await IdentifyProtocol.ReadAsync(stream, connection.RemotePeer, cancellationToken, InternIdentify);
        }
    }

    private Func<string, string>? _internIdentifyString;

    /// <summary><see cref="InternIdentifyString"/> as one delegate, made once, for the identify answers and pushes read.</summary>
    private Func<string, string> InternIdentify => _internIdentifyString ??= InternIdentifyString;

    /// <summary>Our own instance of a protocol id or version string a peer names too; the peer's otherwise.</summary>
    private string InternIdentifyString(string value) =>
        _protocols.Ids.TryGetValue(value, out var ours) ? ours
        : value == _options.AgentVersion ? _options.AgentVersion
        : value == _options.ProtocolVersion ? _options.ProtocolVersion
        : value;

    /// <summary>
    /// False when the exchange should end quietly: the connection closed or the token was cancelled.
    /// A stream the remote reset on an open connection is read anyway, so its reset is the cause reported.
    /// </summary>
    private static async ValueTask<bool> ReadableAsync(YamuxStream stream, PeerConnection connection, CancellationToken cancellationToken) =>
        await stream.WaitReadableAsync(cancellationToken, falseWhenCancelled: true) || (!connection.IsClosed && !cancellationToken.IsCancellationRequested);

    private async Task AcceptLoopAsync(ITransportListener listener)
    {
        // Returns to the caller at once, as Task.Run would, but stays on the caller's context when it
        // has one (a simulation); without one it continues on the thread pool.
        await Task.Yield();
        while (!_stopping.IsCancellationRequested)
        {
            RawConnection raw;
            try
            {
                raw = await listener.AcceptAsync(_stopping.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (Exception e) when (e is IOException)
            {
                _logger.LogDebug(e, "accept on {Address} failed", listener.Address);
                continue;
            }
            if (!raw.StartsWithProxyHeader)
            {
                await AdmitAsync(raw);
            }
            else if (Interlocked.Increment(ref _pendingProxyHeaders) > _options.MaxPendingProxyHeaders)
            {
                // Until its header names the client no per-address limit can apply, so silent connections are bounded by count alone.
                Interlocked.Decrement(ref _pendingProxyHeaders);
                _logger.LogWarning("refusing inbound connection from {Address}: {Max} connections are still to send their PROXY protocol header",
                    raw.RemoteAddress, _options.MaxPendingProxyHeaders);
                await raw.DisposeAsync();
            }
            else
            {
                // Off the loop: a connection that sends nothing must not hold up the ones behind it.
                _ = AdmitProxiedAsync(raw);
            }
        }
    }

    private async ValueTask AdmitAsync(RawConnection raw)
    {
        if (!_inbound.TryAcquire(raw.RemoteAddress, _trustedPeer is not null, out var slot, out var trustedSlot, out var refusal))
        {
            _logger.LogWarning("refusing inbound connection from {Address}: {Reason}", raw.RemoteAddress, refusal);
            await raw.DisposeAsync();
            return;
        }
        _ = UpgradeInboundAsync(raw, slot, trustedSlot);
    }

    /// <summary>
    /// Reads the PROXY protocol header within <see cref="HostOptions.UpgradeTimeout"/>, then admits the connection as its
    /// client's, so that the inbound caps per address, scopes and origins see the client rather than the load balancer.
    /// </summary>
    private async Task AdmitProxiedAsync(RawConnection raw)
    {
        // The deadline runs from the accept, not from whenever this task first gets a thread.
        using var deadline = new CancellationTokenSource(_options.UpgradeTimeout, _options.TimeProvider);
        await Task.Yield();
        RawConnection? client = null;
        try
        {
            using var scope = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, _stopping.Token);
            var header = await ProxyProtocolHeader.ReadAsync(raw.Stream, scope.Token);
            // LOCAL (the proxy's health check) and UNKNOWN name nobody: the proxy's own address stands.
            client = header.Source is { } source
                ? new RawConnection(raw.Stream, raw.LocalAddress, Multiaddress.FromIPEndPoint(source)) { IsLimited = raw.IsLimited }
                : raw;
        }
        catch (ProxyProtocolException e)
        {
            _logger.LogWarning("closing inbound connection from {Address}: {Reason}", raw.RemoteAddress, e.Message);
        }
        catch (OperationCanceledException) when (!_stopping.IsCancellationRequested)
        {
            _logger.LogDebug("closing inbound connection from {Address}: no PROXY protocol header within {Timeout}", raw.RemoteAddress, _options.UpgradeTimeout);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
        {
            _logger.LogDebug(e, "inbound connection from {Address} failed before its PROXY protocol header", raw.RemoteAddress);
        }
        finally
        {
            Interlocked.Decrement(ref _pendingProxyHeaders);
        }
        if (client is null)
        {
            await raw.DisposeAsync();
            return;
        }
        await AdmitAsync(client);
    }

    /// <summary>
    /// Keeps the last <see cref="HostOptions.InboundConnectionsReservedForTrustedPeers"/> inbound slots
    /// for peers <paramref name="isTrusted"/> accepts. It is asked, with a deadline of
    /// <see cref="HostOptions.IdentifyTimeout"/>, about each peer that lands in those slots, once the
    /// connection is up (so the check may call the peer over it); a peer it refuses, or that it cannot
    /// judge in time, loses the connection.
    /// </summary>
    public void KeepInboundCapacityFor(Func<PeerId, CancellationToken, ValueTask<bool>> isTrusted)
    {
        ArgumentNullException.ThrowIfNull(isTrusted);
        _trustedPeer = isTrusted;
    }

    private async Task UpgradeInboundAsync(RawConnection raw, string slot, bool trustedSlot)
    {
        await Task.Yield();
        PeerConnection connection;
        try
        {
            connection = await ConnectionUpgrader.UpgradeAsync(raw, ConnectionDirection.Inbound, null, _options, _stopping.Token);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _inbound.Release(slot);
            _logger.LogDebug(e, "inbound upgrade from {Address} failed", raw.RemoteAddress);
            return;
        }
        connection.OnClosed(_releaseInboundSlot, slot);
        // PeerIds are free to mint, so this bounds only a careless or buggy peer; the address cap bounds the rest.
        if (_connections.CountOf(connection.RemotePeer) >= _options.MaxConnectionsPerPeer)
        {
            _logger.LogWarning("refusing inbound connection from {Peer}: {Max} connections with it are open", connection.RemotePeer, _options.MaxConnectionsPerPeer);
            await connection.DisposeAsync();
            return;
        }
        try
        {
            await AdoptAsync(connection);
        }
        catch (ObjectDisposedException)
        {
            return;
        }
        if (trustedSlot && _trustedPeer is { } isTrusted) await KeepIfTrustedAsync(connection, isTrusted);
    }

    private async Task KeepIfTrustedAsync(PeerConnection connection, Func<PeerId, CancellationToken, ValueTask<bool>> isTrusted)
    {
        var trusted = false;
        using (var deadline = new CancellationTokenSource(_options.IdentifyTimeout, _options.TimeProvider))
        using (var scope = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, _stopping.Token))
        {
            try
            {
                trusted = await isTrusted(connection.RemotePeer, scope.Token);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                _logger.LogDebug(e, "could not tell whether {Peer} is trusted", connection.RemotePeer);
            }
        }
        if (trusted) return;
        _logger.LogInformation("closing the inbound connection from {Peer}: it holds a slot kept for trusted peers and is not one", connection.RemotePeer);
        await connection.DisposeAsync();
    }

    private async Task AcceptStreamsAsync(PeerConnection connection)
    {
        await Task.Yield();
        var connectionScope = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        // The connection usually closes after the loop below has ended and disposed the scope: the
        // registration is gone by then, so nothing cancels a disposed scope.
        var cancelOnClose = connection.OnClosed(s_cancelScope, connectionScope);
        try
        {
            // The loop is inline rather than a method of its own: it waits for the connection's whole
            // life, and each pending async method is a state machine kept per connection.
            var connectionToken = connectionScope.Token;
            var handlers = new RunningHandlers();
            while (true)
            {
                YamuxStream? stream;
                try
                {
                    // Negotiation writes at once (our header or our answer), so the ACK can go with it.
                    // Woken inline: this loop only hands the stream to ServeStreamAsync, whose yield is
                    // then the one hop between the read loop and the handler.
                    await connection.Session.WhenStreamToAcceptAsync();
                    if (_stopping.IsCancellationRequested) break;
                    stream = await connection.Session.TryAcceptStreamAsync(ackWithFirstWrite: true, _stopping.Token, wakeInline: true);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    break;
                }
                if (stream is null) break;
                connection.Touch();
                handlers.Started();
                _ = ServeStreamAsync(connection, stream, handlers, connectionToken);
            }
            await handlers.WhenDrainedAsync();
        }
        finally
        {
            cancelOnClose.Dispose();
            lock (connectionScope) connectionScope.Dispose();
        }
    }

    private static readonly Action<PeerConnection, object?> s_cancelScope = static (_, state) => CancelUnlessDisposed((CancellationTokenSource)state!);

    /// <summary>Cancels a scope whose owner may be disposing it on another thread (the close raced the end of its use).</summary>
    private static void CancelUnlessDisposed(CancellationTokenSource scope)
    {
        lock (scope)
        {
            try
            {
                // Cancel, not CancelAsync: CancelAsync runs the callbacks off a simulation's thread.
                scope.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }
    }

    private async Task ServeStreamAsync(PeerConnection connection, YamuxStream stream, RunningHandlers handlers, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Yield();
            string protocol;
            try
            {
                var protocols = _protocols;
                // The answer to a lazy dialer (its request is here already) waits to leave with the
                // handler's first write: one frame and one connection write instead of two.
                var negotiation = MultistreamSelect.HandleAsync(stream, protocols.Contains, protocols.Ids, () => stream.DataAvailable,
                    answer => stream.HoldForFirstWrite(answer.Span, HeldAnswerLimit()), cancellationToken);
                // A lazy dialer's proposal came with the stream's first frame, so negotiation usually ends
                // without waiting: the timeout is armed only when it has to wait.
                protocol = negotiation.IsCompleted ? await negotiation : await WithNegotiationTimeoutAsync(negotiation, stream);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                _logger.LogDebug(e, "stream negotiation with {Peer} failed", connection.RemotePeer);
                if (e is MultistreamException { Reason: MultistreamFailure.NoProtocolSupported } && !cancellationToken.IsCancellationRequested)
                    await CloseRefusedStreamAsync(stream, cancellationToken);
                else stream.Reset();
                return;
            }
            if (!_handlers.TryGetValue(protocol, out var handler))
            {
                stream.Reset();
                return;
            }
            try
            {
                await handler(new StreamContext(stream, connection, protocol), cancellationToken);
                await stream.DisposeAsync();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                _logger.LogDebug(e, "{Protocol} handler for {Peer} failed", protocol, connection.RemotePeer);
                stream.Reset();
            }
        }
        finally
        {
            handlers.Finished();
        }
    }

    /// <summary>
    /// How long an accepted stream's negotiation answer may wait for the handler's first write. A
    /// handler slower than this gains nothing measurable from the saved write, while the answer (and
    /// the stream's ACK, which rides with it) would keep the dialer waiting: its answer timeout, its
    /// backlog of unacknowledged streams.
    /// </summary>
    private TimeSpan HeldAnswerLimit()
    {
        var timeout = _options.StreamNegotiationTimeout;
        return timeout == Timeout.InfiniteTimeSpan || timeout / 2 > MaxHeldAnswer ? MaxHeldAnswer : timeout / 2;
    }

    private static readonly TimeSpan MaxHeldAnswer = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// A negotiation still running after <see cref="HostOptions.StreamNegotiationTimeout"/> has its
    /// stream reset, which ends the pending read (the dialer sees the reset, as after a cancelled read).
    /// </summary>
    private async Task<string> WithNegotiationTimeoutAsync(Task<string> negotiation, YamuxStream stream)
    {
        var deadline = new NegotiationDeadline(stream);
        using (_options.TimeProvider.CreateTimer(s_negotiationExpired, deadline, _options.StreamNegotiationTimeout, Timeout.InfiniteTimeSpan))
        {
            try
            {
                return await negotiation;
            }
            finally
            {
                _ = deadline.Finish();
            }
        }
    }

    private static readonly TimerCallback s_negotiationExpired = static s => ((NegotiationDeadline)s!).Expire();

    /// <summary>Resets the stream on expiry unless the negotiation finished first (a timer may fire while it is being disposed).</summary>
    private sealed class NegotiationDeadline(YamuxStream stream)
    {
        private int _state;

        public void Expire()
        {
            if (Interlocked.CompareExchange(ref _state, 2, 0) == 0) stream.Reset();
        }

        /// <summary>Stops the deadline; true when it had expired (and reset the stream) first.</summary>
        public bool Finish() => Interlocked.CompareExchange(ref _state, 1, 0) == 2;
    }

    /// <summary>
    /// A lazy dialer's first data follows its proposal in the same write, so after our "na" we read
    /// that data as a malformed proposal (reported as NoProtocolSupported). Resetting then would drop the "na" the dialer has not read
    /// yet (a reset discards what is buffered), and it could not tell a refusal from a failure after
    /// acceptance — the RPC layer's not-delivered mark relies on that. So our side closes, the
    /// dialer's bytes are discarded until it leaves, and the reset comes only after the negotiation timeout.
    /// </summary>
    private async Task CloseRefusedStreamAsync(YamuxStream stream, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(4096);
        try
        {
            await stream.CompleteWritesAsync(cancellationToken);
            using var timeout = new CancellationTokenSource(_options.StreamNegotiationTimeout, _options.TimeProvider);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            while (await stream.ReadAsync(buffer, linked.Token) > 0)
            {
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            stream.Reset();
        }
    }

    private IdentifyInfo OwnIdentify(Multiaddress? observed) =>
        new(Identity.PublicKey, AnnouncedAddresses, _protocols.Ids.ToArray(), observed, _options.ProtocolVersion, _options.AgentVersion);

    private async Task ServeIdentifyAsync(StreamContext context, CancellationToken cancellationToken)
    {
        var info = OwnIdentify(context.Connection.RemoteAddress);
        // A peer that does not read its identify answer must not keep the stream (and so the connection) open.
        using var timeout = new CancellationTokenSource(_options.IdentifyTimeout, _options.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        await IdentifyProtocol.WriteAsync(context.Stream, info, linked.Token);
        await context.Stream.CompleteWritesAsync(linked.Token);
    }

    /// <summary>
    /// A peer's identify push: what it says about itself now, read and checked as an identify answer is (its key, the
    /// addresses it may name at the connection's scope), replacing the protocols it listed. One at a time per
    /// connection: a push while another is read is reset, so a flood of them holds one message's memory.
    /// </summary>
    private async Task ServeIdentifyPushAsync(StreamContext context, CancellationToken cancellationToken)
    {
        var connection = context.Connection;
        if (!connection.TryBeginIdentifyPush())
        {
            context.Stream.Reset();
            return;
        }

        try
        {
            using var timeout = new CancellationTokenSource(_options.IdentifyTimeout, _options.TimeProvider);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            var info = await IdentifyProtocol.ReadAsync(context.Stream, connection.RemotePeer, linked.Token, InternIdentify);
            RecordIdentify(connection, info, push: true);
        }
        finally
        {
            connection.EndIdentifyPush();
        }
    }

    /// <summary>Graceful stop: listeners close, connections get a go-away and close, handlers are cancelled.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        // Cancel, not CancelAsync: CancelAsync runs the callbacks on TaskScheduler.Default, off a simulation's thread.
        _stopping.Cancel();
        _machineWatch.Dispose();
        ITransportListener[] listeners;
        Task[] loops;
        lock (_listeners)
        {
            listeners = _listeners.ToArray();
            loops = _acceptLoops.ToArray();
        }
        foreach (var listener in listeners)
            await listener.DisposeAsync();
        await Task.WhenAll(loops);
        await _identifyPush.WhenIdleAsync();
        await _connections.DisposeAsync();
        _stopping.Dispose();
    }

    /// <summary>The handled protocol ids with their match function, made once per change rather than per negotiated stream.</summary>
    private sealed class ProtocolSet(FrozenSet<string> ids)
    {
        public FrozenSet<string> Ids { get; } = ids;
        public Func<string, bool> Contains { get; } = ids.Contains;
    }
}
