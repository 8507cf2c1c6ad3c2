using System.Diagnostics;
using System.Net;
using System.Text;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>
/// Learns whether this node is reachable from outside: asks a few connected AutoNAT servers to
/// dial it back on its addresses and derives <see cref="Status"/> from their answers
/// (<see cref="ReachabilityTally"/>). After <see cref="Start"/> it checks again periodically on the
/// host's clock: every <see cref="AutoNatClientOptions.RetryInterval"/> while unknown, every
/// <see cref="AutoNatClientOptions.RefreshInterval"/> once known.
/// </summary>
public sealed class AutoNatClient : IAsyncDisposable
{
    /// <summary>Servers remembered beyond the connected ones, the most recently identified kept.</summary>
    private const int MaxKnownServers = 32;

    /// <summary>Reached addresses remembered, the most recently reached kept: an address that changed leaves in time.</summary>
    private const int MaxReachedAddresses = 4;

    private readonly P2PHost _host;
    private readonly AutoNatClientOptions _options;
    private readonly ILogger _logger;
    private readonly Random _random;
    private readonly ReachabilityTally _tally;
    private readonly SemaphoreSlim _round = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private readonly List<PeerId> _knownServers = [];

    /// <summary>Addresses OK answers named, each with the servers that reached it, the most recent last.</summary>
    private readonly List<(Multiaddress Address, HashSet<PeerId> Servers)> _reached = [];
    private Task? _loop;
    private bool _disposed;

    public AutoNatClient(P2PHost host, AutoNatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        options ??= new AutoNatClientOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.PeersPerRound);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.ConfidenceThreshold);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxAddressesPerRequest);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.ServersToConfirmAddress);
        _host = host;
        _options = options;
        _logger = options.LoggerFactory.CreateLogger<AutoNatClient>();
        _random = (options.RandomSource ?? host.RandomSource).CreateRandom();
        _tally = new ReachabilityTally(options.ConfidenceThreshold);
        host.PeerStore.ProtocolsUpdated += OnProtocolsUpdated;
        foreach (var connection in host.Connections) OnProtocolsUpdated(connection.RemotePeer);
    }

    /// <summary>The current conclusion; <see cref="NatStatus.Unknown"/> until enough answers agree.</summary>
    public NatStatus Status
    {
        get
        {
            lock (_gate) return _tally.Status;
        }
    }

    /// <summary>Raised when <see cref="Status"/>'s reachability changes, with the new status.</summary>
    public event Action<NatStatus>? StatusChanged;

    /// <summary>Starts the periodic checks; <see cref="DisposeAsync"/> stops and awaits them.</summary>
    public void Start()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_loop is not null) throw new InvalidOperationException("the AutoNAT client has already started");
            _loop = RunAsync(_stopping.Token);
        }
    }

    /// <summary>
    /// One round now: asks up to <see cref="AutoNatClientOptions.PeersPerRound"/> servers at once
    /// (connected ones first, then ones we knew) and counts their answers. Rounds do not overlap; a
    /// second caller waits for the first.
    /// </summary>
    /// <returns>The status after the round.</returns>
    public async Task<NatStatus> CheckAsync(CancellationToken cancellationToken)
    {
        lock (_gate) ObjectDisposedException.ThrowIf(_disposed, this);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        await _round.EnterAsync(linked.Token);
        try
        {
            var servers = ChooseServers();
            var addresses = CandidateAddresses();
            if (servers.Count == 0 || addresses.Count == 0)
            {
                _logger.LogDebug("AutoNAT round skipped: {Servers} servers to ask, {Addresses} addresses to check", servers.Count, addresses.Count);
                return Status;
            }
            var answers = await Task.WhenAll(servers.Select(server => AskQuietlyAsync(server, addresses, linked.Token)));
            for (var i = 0; i < servers.Count; i++)
            {
                if (answers[i] is { } answer) Count(servers[i], answer, addresses);
            }
            AnnounceConfirmed();
            return Status;
        }
        finally
        {
            _round.Release();
        }
    }

    /// <summary>Asks <paramref name="server"/> once to dial us back on our current addresses; the answer is not counted.</summary>
    /// <exception cref="TimeoutException">No answer within <see cref="AutoNatClientOptions.RequestTimeout"/>.</exception>
    /// <exception cref="IOException">The stream failed or the answer was malformed (<see cref="AutoNatException"/> and the codec's other errors).</exception>
    public Task<AutoNatDialResponse> AskAsync(PeerId server, CancellationToken cancellationToken) =>
        AskAsync(server, CandidateAddresses(), cancellationToken);

    /// <summary>Asks <paramref name="server"/> once to dial us back on <paramref name="addresses"/>; the answer is not counted.</summary>
    /// <inheritdoc cref="AskAsync(PeerId, CancellationToken)"/>
    public async Task<AutoNatDialResponse> AskAsync(PeerId server, IReadOnlyList<Multiaddress> addresses, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(addresses);
        using var timeout = new CancellationTokenSource(_options.RequestTimeout, _host.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            var stream = await _host.OpenStreamAsync(server, AutoNatMessageCodec.ProtocolId, linked.Token);
            await using (stream)
            {
                await AutoNatMessageCodec.WriteRequestAsync(stream, new AutoNatDialRequest(_host.PeerId, addresses), linked.Token);
                return await AutoNatMessageCodec.ReadResponseAsync(stream, AutoNatMessageCodec.MaxMessageLength, linked.Token);
            }
        }
        catch (OperationCanceledException e) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"{server} did not answer the AutoNAT request within {_options.RequestTimeout}", e);
        }
    }

    /// <summary>
    /// What we ask servers to dial: the operator's announce addresses and the confirmed ones, each listen address, and
    /// each on the host part other peers observe us at (identify), which is what a NAT with a forwarded port or a public IP on
    /// another interface shows. An observed address is sent whole only when the connection it was
    /// seen on left from a listen endpoint (TCP port reuse, the TestKit's NAT models): then it is
    /// the NAT's mapping of that endpoint, which a server can reach exactly when the NAT lets
    /// strangers in. From an ephemeral port (no port reuse) its port is one nobody can dial.
    /// </summary>
    internal IReadOnlyList<Multiaddress> CandidateAddresses()
    {
        var bound = _host.ListenAddresses.Where(a => !DialBackAddressPolicy.IsRelayed(a)).ToList();
        var listen = bound.Where(a => !a.HasUnspecifiedHost).ToList();
        // First what the host tells peers beyond its listen addresses: the operator's (a forwarded port, whose number
        // nothing else would guess) and those confirmed before, so each round checks them again.
        var result = _host.AnnounceAddresses.Concat(_host.ConfirmedAddresses).Where(a => !DialBackAddressPolicy.IsRelayed(a)).Distinct().ToList();
        foreach (var connection in _host.Connections)
        {
            if (connection.RemoteIdentify?.ObservedAddress is not { Components.Count: > 0 } observed || DialBackAddressPolicy.IsRelayed(observed)) continue;
            foreach (var address in listen)
            {
                if (OnHostOf(observed, address) is { } candidate && !result.Contains(candidate)) result.Add(candidate);
            }
            if (connection.Direction == ConnectionDirection.Outbound && bound.Any(l => IsListenEndpoint(connection.LocalAddress, l))
                && observed.WithoutPeerId() is var mapped && !result.Contains(mapped))
                result.Add(mapped);
        }
        foreach (var address in listen)
        {
            if (!result.Contains(address)) result.Add(address);
        }
        return result.Count > _options.MaxAddressesPerRequest ? result[.._options.MaxAddressesPerRequest] : result;
    }

    /// <summary>
    /// Connected servers first, in random order; then, when there are too few, servers we knew
    /// (identify told us they speak AutoNAT) but are no longer connected to: they are dialled.
    /// Idle connections close, and a status would otherwise never be checked again.
    /// </summary>
    private List<PeerId> ChooseServers()
    {
        var connected = new List<PeerId>();
        foreach (var connection in _host.Connections)
        {
            var peer = connection.RemotePeer;
            // A relay's server would see the relay's address, and refuses such requests anyway.
            if (connection.IsClosed || DialBackAddressPolicy.IsRelayed(connection.RemoteAddress) || connected.Contains(peer)) continue;
            if (SpeaksAutoNat(peer)) connected.Add(peer);
        }
        Shuffle(connected);
        if (connected.Count >= _options.PeersPerRound) return connected[.._options.PeersPerRound];
        List<PeerId> known;
        lock (_gate) known = _knownServers.Where(p => !connected.Contains(p)).ToList();
        Shuffle(known);
        connected.AddRange(known.Take(_options.PeersPerRound - connected.Count));
        return connected;
    }

    private bool SpeaksAutoNat(PeerId peer) => _host.PeerStore.GetProtocols(peer).Contains(AutoNatMessageCodec.ProtocolId, StringComparer.Ordinal);

    private void Shuffle(List<PeerId> peers)
    {
        // Sorted first, so the same seed picks the same servers whatever order connections were made in.
        peers.Sort();
        lock (_gate)
        {
            for (var i = peers.Count - 1; i > 0; i--)
            {
                var j = _random.Next(i + 1);
                (peers[i], peers[j]) = (peers[j], peers[i]);
            }
        }
    }

    private void OnProtocolsUpdated(PeerId peer)
    {
        var speaks = SpeaksAutoNat(peer);
        lock (_gate)
        {
            _knownServers.Remove(peer);
            if (!speaks) return;
            _knownServers.Add(peer);
            if (_knownServers.Count > MaxKnownServers) _knownServers.RemoveAt(0);
        }
    }

    private async Task<AutoNatDialResponse?> AskQuietlyAsync(PeerId server, IReadOnlyList<Multiaddress> addresses, CancellationToken cancellationToken)
    {
        try
        {
            return await AskAsync(server, addresses, cancellationToken);
        }
        catch (Exception e) when (e is IOException or TimeoutException)
        {
            // A server that fails to answer says nothing about us.
            _logger.LogDebug(e, "AutoNAT request to {Server} failed", server);
            return null;
        }
    }

    private void Count(PeerId server, AutoNatDialResponse answer, IReadOnlyList<Multiaddress> asked)
    {
        NatStatus changed;
        lock (_gate)
        {
            if (answer is { Status: AutoNatResponseStatus.Ok, Address: { } address } && address.WithoutPeerId() is var reached && asked.Contains(reached))
                Reached(server, reached);
            if (!_tally.Add(answer))
            {
                _logger.LogDebug("AutoNAT answer from {Server}: {Status} {Text}; still {Reachability}", server, answer.Status, answer.StatusText, _tally.Status);
                return;
            }
            changed = _tally.Status;
        }
        _logger.LogInformation("AutoNAT: this node is now {Status}", changed);
        EventSubscribers.Raise(StatusChanged, changed, _logger, $"{nameof(AutoNatClient)}.{nameof(StatusChanged)}");
    }

    private void Reached(PeerId server, Multiaddress address)
    {
        Debug.Assert(_gate.IsHeldByCurrentThread);
        var at = _reached.FindIndex(r => r.Address.Equals(address));
        var servers = at >= 0 ? _reached[at].Servers : [];
        if (at >= 0) _reached.RemoveAt(at);
        servers.Add(server);
        _reached.Add((address, servers));
        if (_reached.Count > MaxReachedAddresses) _reached.RemoveAt(0);
    }

    /// <summary>
    /// Tells the host the addresses enough servers reached while we are public, other than its listen and announce addresses; none
    /// once private (what was reached then is forgotten), and none while unknown. In a fixed order, so that servers
    /// reaching them in turn change nothing peers are told.
    /// </summary>
    private void AnnounceConfirmed()
    {
        if (!_options.AnnounceConfirmedAddresses) return;
        // The operator's own are announced anyway.
        var known = _host.ListenAddresses.Concat(_host.AnnounceAddresses).ToHashSet();
        Multiaddress[] confirmed;
        lock (_gate)
        {
            if (_tally.Status.Reachability == NatReachability.Private) _reached.Clear();
            confirmed = _tally.Status.Reachability != NatReachability.Public ? [] :
                [.. _reached.Where(r => r.Servers.Count >= _options.ServersToConfirmAddress && !known.Contains(r.Address)).Select(r => r.Address).OrderBy(a => a.ToString(), StringComparer.Ordinal)];
        }
        _host.SetConfirmedAddresses(confirmed);
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var delay = _options.InitialDelay;
        try
        {
            while (true)
            {
                await Task.Delay(delay, _host.TimeProvider, cancellationToken);
                try
                {
                    await CheckAsync(cancellationToken);
                }
                catch (Exception e) when (e is not (OperationCanceledException or OutOfMemoryException))
                {
                    _logger.LogWarning(e, "AutoNAT round failed");
                }
                delay = Status.Reachability == NatReachability.Unknown ? _options.RetryInterval : _options.RefreshInterval;
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary><paramref name="listen"/> with its first component (the host) replaced by <paramref name="observed"/>'s; null when they are of different kinds.</summary>
    internal static Multiaddress? OnHostOf(Multiaddress observed, Multiaddress listen)
    {
        if (listen.Components.Count == 0 || observed.Components[0].Protocol.Code != listen.Components[0].Protocol.Code) return null;
        var text = new StringBuilder();
        Append(text, observed.Components[0]);
        for (var i = 1; i < listen.Components.Count; i++) Append(text, listen.Components[i]);
        return Multiaddress.TryParse(text.ToString(), out var address) ? address : null;

        static void Append(StringBuilder text, MultiaddressComponent component)
        {
            text.Append('/').Append(component.Protocol.Name);
            if (component.Value.Length > 0) text.Append('/').Append(component.ValueText);
        }
    }

    /// <summary>Whether a connection's <paramref name="local"/> end is the endpoint <paramref name="listen"/> binds (the same port on an unspecified host).</summary>
    internal static bool IsListenEndpoint(Multiaddress local, Multiaddress listen)
    {
        var (l, b) = (local.WithoutPeerId().Components, listen.WithoutPeerId().Components);
        if (l.Count == 0 || l.Count != b.Count || l[0].Protocol.Code != b[0].Protocol.Code) return false;
        if (!listen.HasUnspecifiedHost && !l[0].Value.Span.SequenceEqual(b[0].Value.Span)) return false;
        for (var i = 1; i < l.Count; i++)
            if (l[i].Protocol.Code != b[i].Protocol.Code || !l[i].Value.Span.SequenceEqual(b[i].Value.Span)) return false;
        return true;
    }

    public async ValueTask DisposeAsync()
    {
        Task? loop;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            loop = _loop;
        }
        _host.PeerStore.ProtocolsUpdated -= OnProtocolsUpdated;
        // Nobody keeps them true any more.
        if (_options.AnnounceConfirmedAddresses) _host.SetConfirmedAddresses([]);
        // Cancel, not CancelAsync: CancelAsync runs the callbacks off a simulation's thread.
        _stopping.Cancel();
        if (loop is not null) await loop;
        _stopping.Dispose();
    }
}
