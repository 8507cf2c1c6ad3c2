using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.AutoNat;
using P2PInference.Facilities.Net.Protocols.Identify;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Protocols.Dcutr;

/// <summary>
/// Direct Connection Upgrade through Relay (<c>/libp2p/dcutr</c>) for one host: turns relayed
/// connections into direct ones where the NATs allow it.
/// </summary>
/// <remarks>
/// <para>
/// On an inbound relayed connection (we are the spec's B) it first dials the peer's advertised
/// addresses (the unilateral upgrade); when none answers it opens <c>/libp2p/dcutr</c>, sends CONNECT
/// with our addresses, times the answer's round trip, sends SYNC, waits half of it and dials the
/// addresses the peer's CONNECT named — up to <see cref="DcutrOptions.MaxAttempts"/> rounds on the
/// one stream. As the dialer of the relayed connection (A) it answers each CONNECT with its own and
/// dials at once on SYNC. The two dials meet as one TCP simultaneous open, which both ends got from a
/// dial, so one of them must run the listener's side of the handshake: B's hole-punch dial upgrades in
/// the responder role, A's as the initiator. The spec leaves this open; rust-libp2p (B dials with
/// <c>override_role</c>) and js-libp2p (B dials with <c>initiator: false</c>) both choose so, and a
/// punch between two implementations works only when they agree.
/// </para>
/// <para>
/// A round succeeds when a direct connection to the peer exists afterwards, whichever way it formed
/// (our dial or the peer's through our listener). The host then prefers it and retires the relayed
/// one after <see cref="HostOptions.RelayedConnectionGracePeriod"/>. Each end reports its outcome
/// (<see cref="Completed"/>, and a <c>dcutr:</c> log line).
/// </para>
/// </remarks>
public sealed class DcutrService : IAsyncDisposable
{
    private readonly P2PHost _host;
    private readonly DcutrOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    // Peers we run the exchange with as B (one at a time each), and the exchanges we answer as A: js-libp2p
    // opens a new stream per attempt, which may arrive while the previous one's handler is still ending.
    // Two per peer at most, so one peer's streams cannot take every slot.
    private const int MaxRespondingPerPeer = 2;
    private readonly HashSet<PeerId> _initiating = [];
    private readonly Dictionary<PeerId, int> _respondingTo = [];
    private int _responding;
    private readonly List<Task> _running = [];
    private bool _disposed;

    public DcutrService(P2PHost host, DcutrOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        options ??= new DcutrOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxAttempts);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxConcurrentHolePunches);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxAddresses);
        _host = host;
        _options = options;
        _logger = options.LoggerFactory.CreateLogger<DcutrService>();
        host.Handle(HolePunchMessageCodec.ProtocolId, HandleAsync);
        host.PeerConnected += OnPeerConnected;
    }

    /// <summary>Raised once per hole punch, on either side, when it ends.</summary>
    public event Action<HolePunchOutcome>? Completed;

    /// <summary>Hole punches running now.</summary>
    public int ActiveCount
    {
        get
        {
            lock (_gate) return _initiating.Count + _responding;
        }
    }

    /// <summary>
    /// The next outcome of a hole punch with <paramref name="peer"/>, or a direct one as soon as a direct connection to
    /// it is open: already, or once the peer dials us itself (its unilateral upgrade runs no exchange on our side). For
    /// a caller that just reached the peer through a relay.
    /// </summary>
    public async Task<HolePunchOutcome> WaitForOutcomeAsync(PeerId peer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(peer);
        var outcome = new TaskCompletionSource<HolePunchOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnCompleted(HolePunchOutcome o)
        {
            if (o.Peer == peer) outcome.TrySetResult(o);
        }
        void OnConnected(PeerConnection c)
        {
            if (c.RemotePeer != peer || c.IsRelayed) return;
            // An exchange of ours with the peer reports its own outcome, with its attempts.
            lock (_gate)
            {
                if (_initiating.Contains(peer) || _respondingTo.ContainsKey(peer)) return;
            }
            outcome.TrySetResult(new HolePunchOutcome(peer, c, null, Unilateral: true, 0));
        }
        Completed += OnCompleted;
        _host.PeerConnected += OnConnected;
        try
        {
            // Subscribed first, so an outcome between this check and the wait is not missed.
            if (DirectConnectionTo(peer) is { } direct) return new HolePunchOutcome(peer, direct, null, false, 0);
            return await outcome.Task.WaitOrCancelAsync(cancellationToken);
        }
        finally
        {
            _host.PeerConnected -= OnConnected;
            Completed -= OnCompleted;
        }
    }

    /// <summary>The host prefers a direct connection for new streams, so its choice is the one to report.</summary>
    private PeerConnection? DirectConnectionTo(PeerId peer) => _host.GetConnection(peer) is { IsRelayed: false } direct ? direct : null;

    private void OnPeerConnected(PeerConnection connection)
    {
        if (!connection.IsRelayed || connection.Direction != ConnectionDirection.Inbound) return;
        lock (_gate)
        {
            if (_disposed) return;
            _running.RemoveAll(t => t.IsCompleted);
            _running.Add(InitiateAsync(connection));
        }
    }

    /// <summary>Our side as B: the peer reached us through a relay.</summary>
    private async Task InitiateAsync(PeerConnection relayed)
    {
        await Task.Yield();
        var peer = relayed.RemotePeer;
        if (!TryBegin(peer, initiator: true, out var refusal))
        {
            Report(new HolePunchOutcome(peer, null, refusal, false, 0));
            return;
        }
        HolePunchOutcome outcome;
        try
        {
            outcome = await RunInitiatorAsync(relayed, _stopping.Token);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            outcome = new HolePunchOutcome(peer, DirectConnectionTo(peer), Describe(e), false, 0) { Error = e };
        }
        finally
        {
            End(peer, initiator: true);
        }
        Report(outcome);
    }

    private async Task<HolePunchOutcome> RunInitiatorAsync(PeerConnection relayed, CancellationToken cancellationToken)
    {
        var peer = relayed.RemotePeer;
        IdentifyInfo? info = null;
        try
        {
            info = await _host.IdentifyAsync(relayed, cancellationToken);
        }
        catch (IdentifyException e)
        {
            _logger.LogDebug(e, "dcutr: no identify from {Peer}; skipping the unilateral upgrade", peer);
        }
        if (DirectConnectionTo(peer) is { } already) return new HolePunchOutcome(peer, already, null, false, 0);

        if (info is not null)
        {
            var advertised = Dialable(info.ListenAddresses, peer);
            if (advertised.Count > 0)
            {
                var (direct, failure) = await DialAnyAsync(advertised, peer, ConnectionDirection.Outbound, _options.UnilateralDialTimeout, cancellationToken);
                if (direct is not null) return new HolePunchOutcome(peer, direct, null, true, 0);
                _logger.LogDebug("dcutr: unilateral upgrade to {Peer} failed ({Reason}); punching", peer, failure);
            }
        }

        Yamux.YamuxStream stream;
        using (var timeout = new CancellationTokenSource(_options.MessageTimeout, _host.TimeProvider))
        using (var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token))
        {
            try
            {
                (stream, _) = await relayed.OpenStreamAsync([HolePunchMessageCodec.ProtocolId], linked.Token);
            }
            catch (OperationCanceledException e) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"the DCUtR stream to {peer} did not open within {_options.MessageTimeout}", e);
            }
        }
        await using (stream)
        {
            var reason = "no attempt ran";
            for (var attempt = 1; attempt <= _options.MaxAttempts; attempt++)
            {
                HolePunchMessage answer;
                TimeSpan rtt;
                using (var timeout = new CancellationTokenSource(_options.MessageTimeout, _host.TimeProvider))
                using (var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token))
                {
                    try
                    {
                        await HolePunchMessageCodec.WriteAsync(stream, HolePunchMessage.Connect(OwnAddresses()), linked.Token);
                        var sent = _host.TimeProvider.GetTimestamp();
                        answer = await HolePunchMessageCodec.ReadAsync(stream, HolePunchMessageType.Connect, linked.Token);
                        rtt = _host.TimeProvider.GetElapsedTime(sent);
                        await HolePunchMessageCodec.WriteAsync(stream, HolePunchMessage.Sync, linked.Token);
                    }
                    catch (OperationCanceledException e) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                    {
                        throw new TimeoutException($"{peer} did not answer CONNECT within {_options.MessageTimeout}", e);
                    }
                }
                var targets = Dialable(answer.Addresses, peer);
                if (targets.Count == 0)
                    return new HolePunchOutcome(peer, DirectConnectionTo(peer), "the peer sent no address we can dial", false, attempt);
                // The peer dials when our SYNC reaches it, half a round trip from now: dial then too.
                await Task.Delay(rtt / 2, _host.TimeProvider, cancellationToken);
                var (direct, failure) = await DialAnyAsync(targets, peer, ConnectionDirection.Inbound, _options.DialTimeout, cancellationToken);
                if (direct is not null) return new HolePunchOutcome(peer, direct, null, false, attempt);
                reason = $"{attempt} attempt(s) failed, last: {failure}";
                _logger.LogDebug("dcutr: attempt {Attempt} with {Peer} failed: {Reason}", attempt, peer, failure);
            }
            return new HolePunchOutcome(peer, null, reason, false, _options.MaxAttempts);
        }
    }

    /// <summary>Our side as A: we reached the peer through a relay and it opened the exchange.</summary>
    private async Task HandleAsync(StreamContext context, CancellationToken cancellationToken)
    {
        var connection = context.Connection;
        var peer = connection.RemotePeer;
        if (!connection.IsRelayed)
        {
            // Nothing to upgrade; js-libp2p refuses the same way.
            _logger.LogDebug("dcutr: {Peer} opened a hole punch on a direct connection; closing it", peer);
            return;
        }
        if (!TryBegin(peer, initiator: false, out var refusal))
        {
            // The peer's exchange fails and it reports so; a line here per refused stream would let it fill our log.
            _logger.LogDebug("dcutr: refusing a hole punch from {Peer}: {Reason}", peer, refusal);
            context.Stream.Reset();
            return;
        }
        HolePunchOutcome outcome;
        try
        {
            using var scope = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
            outcome = await RespondAsync(context.Stream, peer, scope.Token);
        }
        catch (OperationCanceledException e) when (cancellationToken.IsCancellationRequested && !_stopping.IsCancellationRequested)
        {
            // The handler's token ends with the relayed connection (a relay that went away): the
            // exchange lost its connection, which "stopped" would misreport as this service stopping.
            var lost = new IOException($"dcutr: the relayed connection to {peer} closed during the hole punch", e);
            outcome = new HolePunchOutcome(peer, DirectConnectionTo(peer), lost.Message, false, 0) { Error = lost };
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            outcome = new HolePunchOutcome(peer, DirectConnectionTo(peer), Describe(e), false, 0) { Error = e };
        }
        finally
        {
            End(peer, initiator: false);
        }
        Report(outcome);
    }

    private async Task<HolePunchOutcome> RespondAsync(Stream stream, PeerId peer, CancellationToken cancellationToken)
    {
        var reason = "the peer sent no CONNECT";
        for (var attempt = 1; attempt <= _options.MaxAttempts; attempt++)
        {
            HolePunchMessage connect;
            using (var timeout = new CancellationTokenSource(_options.MessageTimeout, _host.TimeProvider))
            using (var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token))
            {
                try
                {
                    try
                    {
                        connect = await HolePunchMessageCodec.ReadAsync(stream, HolePunchMessageType.Connect, linked.Token);
                    }
                    catch (EndOfStreamException) when (attempt > 1)
                    {
                        // The peer gave up (or its dial made the connection): the stream is its way of saying so.
                        return new HolePunchOutcome(peer, DirectConnectionTo(peer), reason, false, attempt - 1);
                    }
                    await HolePunchMessageCodec.WriteAsync(stream, HolePunchMessage.Connect(OwnAddresses()), linked.Token);
                    await HolePunchMessageCodec.ReadAsync(stream, HolePunchMessageType.Sync, linked.Token);
                }
                catch (OperationCanceledException e) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                {
                    throw new TimeoutException($"{peer} sent no DCUtR message within {_options.MessageTimeout}", e);
                }
            }
            var targets = Dialable(connect.Addresses, peer);
            if (targets.Count == 0)
            {
                // Its dial to us may still get through; the next CONNECT (or the stream's end) tells.
                reason = "the peer sent no address we can dial";
                continue;
            }
            var (direct, failure) = await DialAnyAsync(targets, peer, ConnectionDirection.Outbound, _options.DialTimeout, cancellationToken);
            if (direct is not null) return new HolePunchOutcome(peer, direct, null, false, attempt);
            reason = $"{attempt} attempt(s) failed, last: {failure}";
        }
        return new HolePunchOutcome(peer, DirectConnectionTo(peer), reason, false, _options.MaxAttempts);
    }

    /// <summary>
    /// Dials every address at once, each upgraded in <paramref name="role"/>; the first direct connection
    /// to <paramref name="peer"/> that opens — one of ours or one the peer dialed to our listener — ends
    /// the wait and cancels the other dials. Null, with the reasons, when none opened within <paramref name="timeout"/>.
    /// </summary>
    private async Task<(PeerConnection? Connection, string? Failure)> DialAnyAsync(IReadOnlyList<Multiaddress> addresses, PeerId peer,
        ConnectionDirection role, TimeSpan timeout, CancellationToken cancellationToken)
    {
        // Our own dial's connection arrives here too: the host raises PeerConnected for every connection it adopts.
        // One completion for every way the wait ends (not Task.WhenAny, which would complete off a simulation's thread).
        var settled = new TaskCompletionSource<PeerConnection?>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnConnected(PeerConnection c)
        {
            if (c.RemotePeer == peer && !c.IsRelayed) settled.TrySetResult(c);
        }
        _host.PeerConnected += OnConnected;
        using var deadline = new CancellationTokenSource(timeout, _host.TimeProvider);
        using var scope = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        using var expiry = scope.Token.Register(() => settled.TrySetResult(null));
        var errors = new List<string>();
        var remaining = addresses.Count;
        try
        {
            if (DirectConnectionTo(peer) is { } existing) return (existing, null);
            if (remaining == 0) settled.TrySetResult(null);
            foreach (var address in addresses) _ = DialOneAsync(address);
            if (await settled.Task is { } connection) return (connection, null);
            cancellationToken.ThrowIfCancellationRequested();
            if (DirectConnectionTo(peer) is { } late) return (late, null);
            lock (errors)
            {
                if (deadline.IsCancellationRequested) errors.Add($"no direct connection within {timeout}");
                return (null, string.Join("; ", errors));
            }
        }
        finally
        {
            _host.PeerConnected -= OnConnected;
            // Dials still running are abandoned; one that completes anyway only adds a connection the host dedupes.
            scope.Cancel();
        }

        async Task DialOneAsync(Multiaddress address)
        {
            try
            {
                await _host.DialDirectAsync(address, peer, role, scope.Token);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                lock (errors)
                {
                    if (!scope.IsCancellationRequested) errors.Add($"{address}: {Describe(e)}");
                    if (--remaining == 0) settled.TrySetResult(null);
                }
            }
        }
    }

    /// <summary>
    /// What we tell the peer to dial: our public addresses as others observe them (identify on our direct
    /// connections), the observed host with each listen port, then the listen addresses themselves.
    /// </summary>
    internal IReadOnlyList<Multiaddress> OwnAddresses()
    {
        // An unspecified listen address (0.0.0.0) still gives its port to the observed host; Add leaves it out itself.
        var listen = _host.ListenAddresses.Where(a => !a.Has(MultiaddressProtocol.P2pCircuit)).ToList();
        var result = new List<Multiaddress>();
        foreach (var connection in _host.Connections)
        {
            if (connection.IsRelayed || connection.RemoteIdentify?.ObservedAddress is not { Components.Count: > 0 } observed) continue;
            if (observed.Has(MultiaddressProtocol.P2pCircuit)) continue;
            Add(observed.WithoutPeerId());
            foreach (var address in listen)
                if (AutoNatClient.OnHostOf(observed, address) is { } candidate) Add(candidate);
        }
        foreach (var address in listen) Add(address);
        return result;

        void Add(Multiaddress address)
        {
            if (result.Count < _options.MaxAddresses && IsUsable(address) && !result.Contains(address)) result.Add(address);
        }
    }

    /// <summary>The peer's addresses worth a direct dial: no relayed, unspecified, private (unless allowed) or other peer's ones; capped.</summary>
    internal List<Multiaddress> Dialable(IEnumerable<Multiaddress> addresses, PeerId peer)
    {
        var result = new List<Multiaddress>();
        foreach (var address in addresses)
        {
            if (result.Count >= _options.MaxAddresses) break;
            if (address.PeerId is { } named && named != peer) continue;
            var target = address.WithoutPeerId();
            if (!IsUsable(target) || !_host.CanDial(target) || result.Contains(target)) continue;
            result.Add(target);
        }
        return result;
    }

    private bool IsUsable(Multiaddress address)
    {
        if (address.Components.Count == 0 || address.Has(MultiaddressProtocol.P2pCircuit) || address.HasUnspecifiedHost) return false;
        // The scope rule kad and identify use: a DNS name that is an IP literal ("/dns4/127.0.0.1") has that
        // IP's scope, so a peer cannot aim our punch at our loopback or LAN by spelling it as a name.
        return _options.AllowPrivateAddresses || AddressScopes.Of(address) == AddressScope.Public;
    }

    private bool TryBegin(PeerId peer, bool initiator, out string? refusal)
    {
        lock (_gate)
        {
            refusal = _disposed ? "the hole-punching service stopped"
                : initiator && _initiating.Contains(peer) ? "a hole punch with the peer is already running"
                : !initiator && _respondingTo.GetValueOrDefault(peer) >= MaxRespondingPerPeer ? "the peer already has hole punches running"
                : _initiating.Count + _responding >= _options.MaxConcurrentHolePunches ? $"{_options.MaxConcurrentHolePunches} hole punches are already running"
                : null;
            if (refusal is not null) return false;
            if (initiator)
            {
                _initiating.Add(peer);
            }
            else
            {
                _responding++;
                _respondingTo[peer] = _respondingTo.GetValueOrDefault(peer) + 1;
            }
            return true;
        }
    }

    private void End(PeerId peer, bool initiator)
    {
        lock (_gate)
        {
            if (initiator)
            {
                _initiating.Remove(peer);
                return;
            }
            _responding--;
            if (--_respondingTo[peer] == 0) _respondingTo.Remove(peer);
        }
    }

    private void Report(HolePunchOutcome outcome)
    {
        if (outcome.IsDirect) _logger.LogInformation("dcutr: direct with {Peer} at {Address}", outcome.Peer, outcome.Address);
        else _logger.LogInformation("dcutr: still relayed with {Peer}: {Reason}", outcome.Peer, outcome.Reason);
        EventSubscribers.Raise(Completed, outcome, _logger, $"{nameof(DcutrService)}.{nameof(Completed)}");
    }

    private static string Describe(Exception e) => e switch
    {
        OperationCanceledException => "stopped",
        AggregateException { InnerExceptions.Count: 1 } a => Describe(a.InnerExceptions[0]),
        _ => e.Message,
    };

    /// <summary>Stops answering and starting hole punches and waits for the running ones to end.</summary>
    public async ValueTask DisposeAsync()
    {
        Task[] running;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            running = _running.ToArray();
        }
        _host.PeerConnected -= OnPeerConnected;
        _host.Unhandle(HolePunchMessageCodec.ProtocolId);
        _stopping.Cancel();
        await Task.WhenAll(running);
        _stopping.Dispose();
    }
}
