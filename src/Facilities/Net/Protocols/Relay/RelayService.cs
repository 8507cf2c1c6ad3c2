using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>
/// The relay side of circuit relay v2 (<c>/libp2p/circuit/relay/0.2.0/hop</c>): peers reserve a
/// slot (bounded in count overall and per remote address, for <see cref="RelayServiceOptions.ReservationTtl"/>,
/// renewable), and a CONNECT to a peer holding one opens a <c>/stop</c> stream to it and splices the
/// two streams, within <see cref="RelayServiceOptions.ConnectionLimit"/>. Every refusal carries the
/// spec's status; a malformed request is answered MALFORMED_MESSAGE and touches nothing else.
/// </summary>
/// <remarks>
/// A reservation lives on the connection it was made on: it is kept open while the reservation lasts,
/// and the reservation ends when it closes (the relay could not reach the peer anyway). Requests over
/// a relayed connection are refused (PERMISSION_DENIED): no circuits of circuits. Each request runs in
/// the host's stream handler, so it ends when the host stops.
/// </remarks>
public sealed class RelayService : IDisposable
{
    /// <summary>
    /// The discovery topic relays are announced under. js-libp2p's circuit relay v2 provides a CID of
    /// SHA-256 of this namespace (<c>RELAY_RENDEZVOUS_NS</c>) in the DHT, which is the key
    /// <c>TopicKey.For</c> gives it, so relays of either are found by both.
    /// </summary>
    public const string DiscoveryTopic = "/libp2p/relay";

    private readonly P2PHost _host;
    private readonly RelayServiceOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly Dictionary<PeerId, Slot> _reservations = [];
    private readonly Dictionary<PeerId, int> _circuitsPerPeer = [];
    private int _circuits;
    private long _bytesRelayed;
    private int _disposed;

    /// <summary>Registers the hop handler on <paramref name="host"/>; <see cref="Dispose"/> removes it and drops the reservations.</summary>
    public RelayService(P2PHost host, RelayServiceOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        options ??= new RelayServiceOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxReservations);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxReservationsPerAddress);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxCircuits);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxCircuitsPerPeer);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.BufferSize);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.ReservationTtl, TimeSpan.FromSeconds(1));
        ArgumentNullException.ThrowIfNull(options.ConnectionLimit);
        _host = host;
        _options = options;
        _logger = options.LoggerFactory.CreateLogger<RelayService>();
        host.Handle(RelayMessageCodec.HopProtocolId, HandleHopAsync);
    }

    public int ReservationCount
    {
        get
        {
            lock (_lock) return _reservations.Count;
        }
    }

    public int CircuitCount => Volatile.Read(ref _circuits);

    /// <summary>Bytes carried through circuits so far, both directions.</summary>
    public long BytesRelayed => Interlocked.Read(ref _bytesRelayed);

    /// <summary>Whether <paramref name="peer"/> holds a reservation now.</summary>
    public bool HasReservation(PeerId peer)
    {
        lock (_lock) return _reservations.TryGetValue(peer, out var slot) && slot.Expires > _host.TimeProvider.GetUtcNow();
    }

    /// <summary>Raised once per circuit when it closes, with why (for logs and tests).</summary>
    public event Action<PeerId, PeerId, RelayCircuitEnd>? CircuitClosed;

    private async Task HandleHopAsync(StreamContext context, CancellationToken cancellationToken)
    {
        var (request, refusal, reason) = await RelayMessageCodec.ReadRequestAsync(context.Stream, RelayMessageCodec.ReadHopAsync, _options.RequestTimeout,
            _host.TimeProvider, cancellationToken);
        if (request is null)
        {
            await RefuseAsync(context, refusal, reason!, cancellationToken);
            return;
        }
        if (context.Connection.IsRelayed)
        {
            await RefuseAsync(context, RelayStatus.PermissionDenied, "requests over a relayed connection are not served", cancellationToken);
            return;
        }
        switch (request.Type)
        {
            case HopMessageType.Reserve:
                await ReserveAsync(context, cancellationToken);
                break;
            case HopMessageType.Connect:
                await ConnectAsync(context, request, cancellationToken);
                break;
            default:
                await RefuseAsync(context, RelayStatus.UnexpectedMessage, $"a client does not send {request.Type}", cancellationToken);
                break;
        }
    }

    private async Task ReserveAsync(StreamContext context, CancellationToken cancellationToken)
    {
        var peer = context.RemotePeer;
        if (_options.AllowReservation is { } allow && !allow(peer))
        {
            await RefuseAsync(context, RelayStatus.ReservationRefused, "not accepted by this relay's policy", cancellationToken);
            return;
        }
        // Counted as the DHT's stores count writes: none for loopback, nor behind a proxy, whose one address every
        // peer would share (it would cap the whole relay at MaxReservationsPerAddress).
        var origin = context.Connection.Origin;
        var now = _host.TimeProvider.GetUtcNow();
        // Whole seconds, as the wire carries it: the holder must not believe in a slot longer than ours.
        var expires = DateTimeOffset.FromUnixTimeSeconds((now + _options.ReservationTtl).ToUnixTimeSeconds());
        string? refusal = null;
        Slot? replaced = null;
        lock (_lock)
        {
            if (Volatile.Read(ref _disposed) != 0) refusal = "the relay is stopping";
            else if (!_reservations.TryGetValue(peer, out replaced) && _reservations.Count >= _options.MaxReservations)
                refusal = $"{_options.MaxReservations} reservations are held";
            else if (origin is not null && _reservations.Values.Count(s => s.Origin == origin && s.Peer != peer) >= _options.MaxReservationsPerAddress)
                refusal = $"{_options.MaxReservationsPerAddress} reservations are held from {origin}";
            else
            {
                var slot = new Slot(this, peer, origin, context.Connection, expires);
                _reservations[peer] = slot;
                slot.Arm(expires - now);
            }
        }
        if (refusal is not null)
        {
            await RefuseAsync(context, RelayStatus.ResourceLimitExceeded, refusal, cancellationToken);
            return;
        }
        replaced?.Release();
        _logger.LogDebug("{Peer} {Action} a reservation until {Expires}", peer, replaced is null ? "holds" : "renewed", expires);
        var answer = new HopMessage(HopMessageType.Status,
            // Our own circuit addresses (we may listen through relays too) are no way to reach us as a relay.
            Reservation: new RelayReservationInfo(expires, _host.AdvertisedAddresses.Where(a => !CircuitAddress.IsCircuit(a)).ToArray(), ReadOnlyMemory<byte>.Empty),
            Limit: _options.ConnectionLimit, Status: RelayStatus.Ok);
        await WriteAnswerAsync(context.Stream, answer, cancellationToken);
    }

    private async Task ConnectAsync(StreamContext context, HopMessage request, CancellationToken cancellationToken)
    {
        var source = context.RemotePeer;
        if (request.Peer is not { } targetInfo)
        {
            await RefuseAsync(context, RelayStatus.MalformedMessage, "CONNECT names no peer", cancellationToken);
            return;
        }
        var target = targetInfo.Id;
        PeerConnection? targetConnection = null;
        string? refusal = null;
        var status = RelayStatus.Ok;
        lock (_lock)
        {
            if (!_reservations.TryGetValue(target, out var slot) || slot.Expires <= _host.TimeProvider.GetUtcNow() || slot.Connection.IsClosed)
                (status, refusal) = (RelayStatus.NoReservation, $"{target} holds no reservation here");
            else if (_circuits >= _options.MaxCircuits)
                (status, refusal) = (RelayStatus.ResourceLimitExceeded, $"{_options.MaxCircuits} circuits are open");
            else if (CircuitsOf(source) >= _options.MaxCircuitsPerPeer || CircuitsOf(target) >= _options.MaxCircuitsPerPeer)
                (status, refusal) = (RelayStatus.ResourceLimitExceeded, $"{_options.MaxCircuitsPerPeer} circuits are open with one of the peers");
            else
            {
                targetConnection = slot.Connection;
                _circuits++;
                _circuitsPerPeer[source] = CircuitsOf(source) + 1;
                _circuitsPerPeer[target] = CircuitsOf(target) + 1;
            }
        }
        if (targetConnection is null)
        {
            await RefuseAsync(context, status, refusal!, cancellationToken);
            return;
        }
        try
        {
            var stop = await OpenStopAsync(targetConnection, source, cancellationToken);
            if (stop is null)
            {
                await RefuseAsync(context, RelayStatus.ConnectionFailed, $"{target} did not accept the connection", cancellationToken);
                return;
            }
            await using (stop)
            {
                await WriteAnswerAsync(context.Stream, new HopMessage(HopMessageType.Status, Limit: _options.ConnectionLimit, Status: RelayStatus.Ok), cancellationToken);
                _logger.LogDebug("relaying {Source} to {Target}", source, target);
                var splice = new RelayCircuit(context.Stream, stop, _options.ConnectionLimit, _options.BufferSize, _host.TimeProvider);
                var end = await splice.RunAsync(cancellationToken);
                Interlocked.Add(ref _bytesRelayed, splice.BytesForwarded);
                _logger.LogDebug("circuit {Source} to {Target} closed: {End} after {Bytes} bytes", source, target, end, splice.BytesForwarded);
                RaiseClosed(source, target, end);
            }
        }
        finally
        {
            lock (_lock)
            {
                _circuits--;
                Decrement(source);
                Decrement(target);
            }
        }
    }

    /// <summary>The target's stop stream once it accepted; null when it could not be reached or refused.</summary>
    private async Task<YamuxStream?> OpenStopAsync(PeerConnection connection, PeerId source, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _host.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        YamuxStream? stream = null;
        try
        {
            (stream, _) = await connection.OpenStreamAsync([RelayMessageCodec.StopProtocolId], linked.Token);
            await RelayMessageCodec.WriteAsync(stream, new StopMessage(StopMessageType.Connect, new RelayPeerInfo(source), _options.ConnectionLimit), linked.Token);
            var answer = await RelayMessageCodec.ReadStopAsync(stream, linked.Token);
            if (answer is { Type: StopMessageType.Status, Status: RelayStatus.Ok }) return stream;
            _logger.LogDebug("{Target} answered STOP CONNECT with {Type} {Status}", connection.RemotePeer, answer.Type, answer.Status);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or MultistreamException or ObjectDisposedException or InvalidOperationException)
        {
            cancellationToken.ThrowIfCancellationRequested();
            _logger.LogDebug(e, "STOP CONNECT to {Target} failed", connection.RemotePeer);
        }
        stream?.Reset();
        return null;
    }

    private int CircuitsOf(PeerId peer) => _circuitsPerPeer.TryGetValue(peer, out var count) ? count : 0;

    private void Decrement(PeerId peer)
    {
        if (CircuitsOf(peer) <= 1) _circuitsPerPeer.Remove(peer);
        else _circuitsPerPeer[peer]--;
    }

    private void RaiseClosed(PeerId source, PeerId target, RelayCircuitEnd end)
    {
        EventSubscribers.Raise(CircuitClosed, source, target, end, _logger, $"{nameof(RelayService)}.{nameof(CircuitClosed)}");
    }

    private async Task RefuseAsync(StreamContext context, RelayStatus status, string reason, CancellationToken cancellationToken)
    {
        _logger.LogDebug("refusing {Peer}: {Status} ({Reason})", context.RemotePeer, status, reason);
        await WriteAnswerAsync(context.Stream, HopMessage.Answer(status), cancellationToken);
    }

    private async Task WriteAnswerAsync(YamuxStream stream, HopMessage answer, CancellationToken cancellationToken)
    {
        // A peer that does not read its answer must not hold the handler.
        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _host.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        await RelayMessageCodec.WriteAsync(stream, answer, linked.Token);
    }

    private void Drop(Slot slot)
    {
        lock (_lock)
        {
            if (!_reservations.TryGetValue(slot.Peer, out var current) || current != slot) return;
            _reservations.Remove(slot.Peer);
        }
        slot.Release();
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _host.Unhandle(RelayMessageCodec.HopProtocolId);
        Slot[] slots;
        lock (_lock)
        {
            slots = _reservations.Values.ToArray();
            _reservations.Clear();
        }
        foreach (var slot in slots) slot.Release();
    }

    /// <summary>One reservation: keeps its connection open until it expires, is renewed on another, or the connection closes.</summary>
    private sealed class Slot
    {
        private readonly RelayService _owner;
        private ITimer? _timer;
        private int _released;

        public Slot(RelayService owner, PeerId peer, string? origin, PeerConnection connection, DateTimeOffset expires)
        {
            _owner = owner;
            Peer = peer;
            Origin = origin;
            Connection = connection;
            Expires = expires;
            connection.KeepOpen();
            _ = DropWhenClosedAsync();
        }

        public PeerId Peer { get; }
        public string? Origin { get; }
        public PeerConnection Connection { get; }
        public DateTimeOffset Expires { get; }

        public void Arm(TimeSpan ttl) => _timer = _owner._host.TimeProvider.CreateTimer(_ => _owner.Drop(this), null, ttl, Timeout.InfiniteTimeSpan);

        public void Release()
        {
            if (Interlocked.Exchange(ref _released, 1) != 0) return;
            _timer?.Dispose();
            Connection.ReleaseKeepOpen();
        }

        private async Task DropWhenClosedAsync()
        {
            await Threading.ContextAwaits.ObserveFailureAsync(Connection.Completion);
            _owner.Drop(this);
        }
    }
}
