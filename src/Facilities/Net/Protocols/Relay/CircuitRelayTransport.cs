using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>
/// The client side of circuit relay v2, as a transport of the host: it dials
/// <c>…/p2p/RELAY/p2p-circuit/p2p/TARGET</c> by a hop CONNECT on a stream to the relay, and listens
/// on <c>…/p2p/RELAY/p2p-circuit</c> by reserving a slot there and taking the connections the relay
/// brings on <c>/stop</c>. Either way the relayed stream is a <see cref="RawConnection"/> that the
/// host upgrades with Noise and Yamux as any other, so the peers authenticate end to end and the
/// relay sees only ciphertext; the result is a <see cref="PeerConnection"/> with
/// <see cref="PeerConnection.IsRelayed"/> and (when the relay sets a limit) <see cref="PeerConnection.IsLimited"/>.
/// </summary>
/// <remarks>
/// List it first in <see cref="HostOptions.Transports"/>: the host takes the first transport that can
/// dial an address, and a TCP or in-memory transport may take a circuit address for its own. The host
/// binds it on construction (it registers the <c>/stop</c> handler); one transport serves one host.
/// </remarks>
public sealed class CircuitRelayTransport : ITransport, IHostBoundTransport
{
    private static readonly Multiaddress CircuitSuffix = Multiaddress.Parse("/p2p-circuit");

    private readonly CircuitRelayOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly Dictionary<PeerId, CircuitRelayListener> _listeners = [];
    private P2PHost? _host;

    public CircuitRelayTransport(CircuitRelayOptions? options = null)
    {
        _options = options ?? new CircuitRelayOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(_options.AcceptBacklog);
        if (_options.RefreshAt is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(options), "RefreshAt must be between 0 and 1");
        _logger = _options.LoggerFactory.CreateLogger<CircuitRelayTransport>();
    }

    /// <summary>The reservations held by this host's circuit listeners, one per relay.</summary>
    public IReadOnlyList<RelayReservation> Reservations
    {
        get
        {
            lock (_lock) return _listeners.Values.Select(l => l.Reservation).ToArray();
        }
    }

    private P2PHost Host => _host ?? throw new InvalidOperationException("the circuit relay transport is not part of a host's transports");

    void IHostBoundTransport.Bind(P2PHost host)
    {
        if (_host is not null) throw new InvalidOperationException("a circuit relay transport serves one host");
        _host = host;
        host.Handle(RelayMessageCodec.StopProtocolId, HandleStopAsync);
    }

    public bool CanDial(Multiaddress address) => CircuitAddress.TryParse(address, out var circuit) && circuit.Target is not null;

    public bool CanListen(Multiaddress address) => CircuitAddress.TryParse(address, out var circuit) && circuit.Target is null;

    /// <exception cref="RelayRefusedException">The relay answered other than OK (NO_RESERVATION, RESOURCE_LIMIT_EXCEEDED, CONNECTION_FAILED…).</exception>
    /// <exception cref="TransportException">The relay could not be reached, does not relay, or broke the protocol.</exception>
    public async ValueTask<RawConnection> DialAsync(Multiaddress address, CancellationToken cancellationToken)
    {
        if (!CircuitAddress.TryParse(address, out var circuit) || circuit.Target is not { } target)
            throw new TransportException($"not a circuit address with a target: {address}");
        var host = Host;
        if (target == host.PeerId) throw new TransportException($"refusing to dial ourselves through a relay ({address})");
        var (stream, relayConnection) = await OpenHopAsync(circuit, cancellationToken);
        try
        {
            HopMessage answer;
            using (var timeout = new CancellationTokenSource(_options.RequestTimeout, host.TimeProvider))
            using (var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token))
            {
                await RelayMessageCodec.WriteAsync(stream, new HopMessage(HopMessageType.Connect, new RelayPeerInfo(target)), linked.Token);
                answer = await RelayMessageCodec.ReadHopAsync(stream, linked.Token);
            }
            CheckAnswer(answer, circuit.Relay, "CONNECT");
            _logger.LogDebug("relayed connection to {Target} through {Relay}", target, circuit.Relay);
            var local = relayConnection.LocalAddress.Encapsulate(CircuitSuffix);
            return new RawConnection(new RelayedStream(stream), local, address) { IsLimited = answer.Limit is { IsUnlimited: false } };
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            stream.Reset();
            throw AsTransportFailure(e, circuit.Relay, "CONNECT");
        }
    }

    /// <summary>Reserves on the relay of <paramref name="address"/> (<c>…/p2p/RELAY/p2p-circuit</c>) and listens there.</summary>
    /// <exception cref="RelayRefusedException">The relay refused the reservation.</exception>
    /// <exception cref="TransportException">The relay could not be reached, does not relay, or broke the protocol.</exception>
    public async ValueTask<ITransportListener> ListenAsync(Multiaddress address, CancellationToken cancellationToken)
    {
        if (!CircuitAddress.TryParse(address, out var circuit) || circuit.Target is not null)
            throw new TransportException($"not a relay's circuit address (…/p2p/RELAY/p2p-circuit): {address}");
        var reservation = await ReserveAsync(circuit.RelayAddress, cancellationToken);
        var listener = new CircuitRelayListener(this, circuit.ListenAddress, reservation, _options.AcceptBacklog);
        CircuitRelayListener? replaced;
        lock (_lock)
        {
            _listeners.TryGetValue(circuit.Relay, out replaced);
            _listeners[circuit.Relay] = listener;
        }
        if (replaced is not null) await replaced.DisposeAsync();
        return listener;
    }

    /// <summary>
    /// Reserves a slot on the relay at <paramref name="relayAddress"/> (ending in <c>/p2p/RELAY</c>),
    /// renewed until disposed. Connections through it reach the host only while it also listens on
    /// the relay (<see cref="P2PHost.StartAsync"/> with <c>…/p2p/RELAY/p2p-circuit</c>, which reserves itself).
    /// </summary>
    /// <exception cref="RelayRefusedException">The relay refused (RESERVATION_REFUSED, RESOURCE_LIMIT_EXCEEDED, PERMISSION_DENIED…).</exception>
    /// <exception cref="TransportException">The relay could not be reached, does not relay, or broke the protocol.</exception>
    public async Task<RelayReservation> ReserveAsync(Multiaddress relayAddress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(relayAddress);
        if (!CircuitAddress.TryParse(relayAddress.Encapsulate(CircuitSuffix), out var circuit))
            throw new ArgumentException($"a relay address ends in /p2p/RELAY: {relayAddress}", nameof(relayAddress));
        var host = Host;
        var (info, limit, connection) = await RequestReservationAsync(circuit.RelayAddress, cancellationToken);
        var reservation = new RelayReservation(this, circuit, host.PeerId, _options, host.TimeProvider, _logger);
        reservation.Start(info, limit, connection);
        _logger.LogInformation("reserved on {Relay} until {Expires}: {Addresses}", circuit.Relay, info.Expires, string.Join(", ", reservation.Addresses));
        return reservation;
    }

    /// <summary>One RESERVE exchange; the connection it went over is where the relay keeps the slot.</summary>
    internal async Task<(RelayReservationInfo Info, RelayLimit? Limit, PeerConnection Connection)> RequestReservationAsync(Multiaddress relayAddress, CancellationToken cancellationToken)
    {
        var circuit = new CircuitAddress(relayAddress, relayAddress.PeerId!, null);
        var (stream, connection) = await OpenHopAsync(circuit, cancellationToken);
        await using (stream)
        {
            try
            {
                using var timeout = new CancellationTokenSource(_options.RequestTimeout, Host.TimeProvider);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
                await RelayMessageCodec.WriteAsync(stream, new HopMessage(HopMessageType.Reserve), linked.Token);
                var answer = await RelayMessageCodec.ReadHopAsync(stream, linked.Token);
                CheckAnswer(answer, circuit.Relay, "RESERVE");
                if (answer.Reservation is not { } info)
                    throw new RelayProtocolException($"relay {circuit.Relay} accepted RESERVE without a reservation");
                return (info, answer.Limit, connection);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                stream.Reset();
                throw AsTransportFailure(e, circuit.Relay, "RESERVE");
            }
        }
    }

    private async Task<(YamuxStream Stream, PeerConnection Connection)> OpenHopAsync(CircuitAddress circuit, CancellationToken cancellationToken)
    {
        var host = Host;
        try
        {
            var connection = await host.ConnectAsync(circuit.RelayAddress, cancellationToken);
            var (stream, _) = await connection.OpenStreamAsync([RelayMessageCodec.HopProtocolId], cancellationToken);
            return (stream, connection);
        }
        catch (MultistreamException e)
        {
            throw new TransportException($"{circuit.Relay} offers no relay service: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException and not TransportException || e is TimeoutException)
        {
            throw new TransportException($"could not reach relay {circuit.Relay}: {e.Message}", e);
        }
    }

    private static void CheckAnswer(HopMessage answer, PeerId relay, string request)
    {
        if (answer.Type != HopMessageType.Status)
            throw new RelayProtocolException($"relay {relay} answered {request} with {answer.Type}", RelayStatus.UnexpectedMessage);
        if (answer.Status is not { } status)
            throw new RelayProtocolException($"relay {relay} answered {request} without a status");
        if (status != RelayStatus.Ok)
            throw new RelayRefusedException(status, $"relay {relay} refused {request}: {status}");
    }

    private static Exception AsTransportFailure(Exception e, PeerId relay, string request) => e switch
    {
        TransportException => e,
        OperationCanceledException => e,
        IOException or TimeoutException => new TransportException($"{request} through relay {relay} failed: {e.Message}", e),
        _ => e,
    };

    internal void Remove(CircuitRelayListener listener)
    {
        lock (_lock)
        {
            if (_listeners.TryGetValue(listener.Reservation.Relay, out var current) && current == listener)
                _listeners.Remove(listener.Reservation.Relay);
        }
    }

    /// <summary>
    /// The relay brings a connection: accepted when we listen on that relay and the backlog has room,
    /// and then held here until the connection built on it lets go (the host disposes the stream
    /// when this handler returns).
    /// </summary>
    private async Task HandleStopAsync(StreamContext context, CancellationToken cancellationToken)
    {
        var host = Host;
        var stream = context.Stream;
        var (request, refusal, _) = await RelayMessageCodec.ReadRequestAsync(stream, RelayMessageCodec.ReadStopAsync, _options.RequestTimeout,
            host.TimeProvider, cancellationToken);
        if (request is null)
        {
            await AnswerStopAsync(stream, refusal, cancellationToken);
            return;
        }
        if (request.Type != StopMessageType.Connect)
        {
            await AnswerStopAsync(stream, RelayStatus.UnexpectedMessage, cancellationToken);
            return;
        }
        if (request.Peer is not { } source)
        {
            await AnswerStopAsync(stream, RelayStatus.MalformedMessage, cancellationToken);
            return;
        }
        CircuitRelayListener? listener;
        lock (_lock) _listeners.TryGetValue(context.RemotePeer, out listener);
        if (listener is null || context.Connection.IsRelayed)
        {
            _logger.LogDebug("refusing a relayed connection from {Source} through {Relay}: we do not listen there", source.Id, context.RemotePeer);
            await AnswerStopAsync(stream, RelayStatus.PermissionDenied, cancellationToken);
            return;
        }
        var relayed = new RelayedStream(stream);
        var remote = CircuitAddress.For(listener.Reservation.RelayAddress, context.RemotePeer, source.Id);
        var raw = new RawConnection(relayed, listener.Address.WithPeerId(host.PeerId), remote) { IsLimited = request.Limit is { IsUnlimited: false } };
        if (!listener.HasRoom)
        {
            await AnswerStopAsync(stream, RelayStatus.ResourceLimitExceeded, cancellationToken);
            return;
        }
        // The answer goes out before the host gets the stream: the host's side of the upgrade writes
        // at once (multistream-select's header), and the relay must read our STATUS first.
        await AnswerStopAsync(stream, RelayStatus.Ok, cancellationToken);
        if (!listener.TryOffer(raw))
        {
            // Filled or closed since we looked; the relay already relays, so the circuit is cut instead.
            stream.Reset();
            return;
        }
        try
        {
            await relayed.Closed.WaitOrCancelAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // The relay connection closed or the host stopped; the connection on the stream ends with it.
        }
    }

    private async Task AnswerStopAsync(Stream stream, RelayStatus status, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_options.RequestTimeout, Host.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        await RelayMessageCodec.WriteAsync(stream, StopMessage.Answer(status), linked.Token);
    }
}
