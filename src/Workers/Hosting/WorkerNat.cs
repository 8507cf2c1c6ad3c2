using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.AutoNat;
using P2PInference.Facilities.Net.Protocols.Dcutr;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Threading;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// Keeps a worker reachable from behind a NAT. AutoNAT (client and server) tells it whether peers can
/// dial it; while they cannot (<see cref="NatReachability.Private"/>, or still unknown after
/// <see cref="NatSettings.UnknownReachabilityGrace"/>) it reserves a slot on up to
/// <see cref="NatSettings.MaxReservations"/> relays — the configured ones first, then providers of
/// <see cref="RelayTopic"/> in the DHT — by listening on <c>…/p2p/RELAY/p2p-circuit</c>, so identify
/// and its provider records carry <c>…/p2p-circuit/p2p/SELF</c>; once public it drops them. A node
/// with <see cref="NatSettings.RelayService"/> relays for others and announces itself under
/// <see cref="RelayTopic"/>. With <see cref="NatSettings.HolePunching"/> a <see cref="DcutrService"/>
/// turns relayed connections direct where the NATs allow, and logs how each attempt ended.
/// </summary>
/// <remarks>
/// A relay found in the DHT is trusted with nothing but ciphertext: the connection through it is
/// Noise end to end to the peer named in the address, and callers still check grants. Its PeerId is
/// checked by the handshake (the address names it), and each round tries a bounded number of them, so
/// records announced by anyone cost a few failed dials at most.
/// </remarks>
public sealed class WorkerNat : IAsyncDisposable
{
    /// <summary>The DHT topic relays are announced under, js-libp2p's (<see cref="RelayService.DiscoveryTopic"/>).</summary>
    public const string RelayTopic = RelayService.DiscoveryTopic;

    /// <summary>Discovered relays tried per round, so bogus records cost a bounded number of dials.</summary>
    private const int MaxCandidatesPerRound = 8;

    private static readonly TimeSpan MinRecheck = TimeSpan.FromSeconds(1);

    private static readonly Multiaddress CircuitSuffix = Multiaddress.Parse("/p2p-circuit");

    private readonly P2PHost _host;
    private readonly IDiscovery _discovery;
    private readonly CircuitRelayTransport? _circuit;
    private readonly WorkerNatOptions _options;
    private readonly NatSettings _settings;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private readonly Dictionary<PeerId, HeldReservation> _held = [];
    private TaskCompletionSource _wake = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private AutoNatServer? _autoNatServer;
    private AutoNatClient? _autoNatClient;
    private Task? _loop;
    private DateTimeOffset _startedAt;
    private bool _announcedAddressesChanged;
    private bool _reconciling;
    private int _disposed;

    /// <param name="circuit">The host's circuit relay transport (listed first in its transports); null: the node never reserves.</param>
    public WorkerNat(P2PHost host, IDiscovery discovery, CircuitRelayTransport? circuit, WorkerNatOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(discovery);
        _host = host;
        _discovery = discovery;
        _circuit = circuit;
        _options = options ?? new WorkerNatOptions();
        _settings = _options.Settings;
        _logger = _options.LoggerFactory.CreateLogger<WorkerNat>();
    }

    /// <summary>What AutoNAT concluded; <see cref="NatStatus.Unknown"/> when AutoNAT is off.</summary>
    public NatStatus Status => _autoNatClient?.Status ?? NatStatus.Unknown;

    /// <summary>The relays holding a slot for us (or that held one and may get it back).</summary>
    public IReadOnlyList<PeerId> Relays
    {
        get
        {
            lock (_gate) return _held.Keys.Order().ToArray();
        }
    }

    /// <summary>The hole-punching service when <see cref="NatSettings.HolePunching"/> is on.</summary>
    public DcutrService? HolePunching { get; private set; }

    /// <summary>The relay service when <see cref="NatSettings.RelayService"/> is on.</summary>
    public RelayService? RelayService { get; private set; }

    /// <summary>Raised when the reachability or the set of reservations changed.</summary>
    public event Action? Changed;

    /// <summary>Starts AutoNAT and the relay service, announces the latter, and starts watching reachability.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        if (_loop is not null) throw new InvalidOperationException("already started");
        _startedAt = _host.TimeProvider.GetUtcNow();
        if (_settings.HolePunching)
        {
            HolePunching = new DcutrService(_host, new DcutrOptions
            {
                AllowPrivateAddresses = _settings.AutoNatAllowPrivateAddresses,
                LoggerFactory = _options.LoggerFactory,
            });
            HolePunching.Completed += outcome => _logger.LogInformation("hole punch: {Outcome}", outcome);
        }
        if (_settings.RelayService)
        {
            RelayService = new RelayService(_host, new RelayServiceOptions { LoggerFactory = _options.LoggerFactory });
            try
            {
                await _discovery.AnnounceAsync(RelayTopic, cancellationToken);
                _logger.LogInformation("relaying for others, announced under {Topic}", RelayTopic);
            }
            catch (Exception e) when (e is not (OperationCanceledException or OutOfMemoryException))
            {
                // The discovery keeps re-announcing on its own timer; the first try may precede joining.
                _logger.LogWarning("relaying for others; announcing it under {Topic} failed for now: {Reason}", RelayTopic, e.Message);
            }
        }
        if (_settings.AutoNat)
        {
            _autoNatServer = new AutoNatServer(_host, new AutoNatServerOptions
            {
                AllowPrivateAddresses = _settings.AutoNatAllowPrivateAddresses,
                LoggerFactory = _options.LoggerFactory,
            });
            _autoNatClient = new AutoNatClient(_host, (_options.AutoNatClient ?? new AutoNatClientOptions()) with { LoggerFactory = _options.LoggerFactory });
            _autoNatClient.StatusChanged += OnStatusChanged;
            _autoNatClient.Start();
        }
        // Reservations (circuit listeners), AutoNAT's confirmed addresses and the machine's own all change these.
        _host.AnnouncedAddressesChanged += OnAnnouncedAddressesChanged;
        _loop = RunAsync(_stopping.Token);
    }

    private void OnStatusChanged(NatStatus status)
    {
        _logger.LogInformation("reachability: {Status}{Consequence}", status, status.Reachability switch
        {
            NatReachability.Private when CanReserve => "; reserving on relays",
            NatReachability.Public when HeldCount > 0 => "; dropping relay reservations",
            _ => "",
        });
        Wake();
        RaiseChanged();
    }

    /// <summary>What peers are told to dial us at changed (AutoNAT confirmed an address, the machine moved networks): provider records should carry it.</summary>
    private void OnAnnouncedAddressesChanged()
    {
        lock (_gate)
        {
            _announcedAddressesChanged = true;
            // A reservation taken or dropped in this round is announced at its end; waking would run the round again.
            if (!_reconciling) _wake.TrySetResult();
        }
    }

    private bool CanReserve => _circuit is not null && _settings.MaxReservations > 0;

    private int HeldCount
    {
        get
        {
            lock (_gate) return _held.Count;
        }
    }

    private void Wake()
    {
        lock (_gate) _wake.TrySetResult();
    }

    private void RaiseChanged() => EventSubscribers.Raise(Changed, _logger, $"{nameof(WorkerNat)}.{nameof(Changed)}");

    private async Task RunAsync(CancellationToken stop)
    {
        await Task.Yield();
        try
        {
            while (!stop.IsCancellationRequested)
            {
                Task wake;
                lock (_gate)
                {
                    if (_wake.Task.IsCompleted) _wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    wake = _wake.Task;
                }
                TimeSpan? next;
                lock (_gate) _reconciling = true;
                try
                {
                    next = await ReconcileAsync(stop);
                }
                catch (Exception e) when (e is not (OperationCanceledException or OutOfMemoryException))
                {
                    _logger.LogWarning(e, "managing relay reservations failed");
                    next = _settings.RelaySearchInterval;
                }
                finally
                {
                    lock (_gate) _reconciling = false;
                }
                bool announce;
                lock (_gate) (announce, _announcedAddressesChanged) = (_announcedAddressesChanged, false);
                if (announce) await AddressesChangedAsync(stop);
                // Until something changes, or until the recheck is due.
                using var due = next is { } wait ? new CancellationTokenSource(wait, _host.TimeProvider) : null;
                using var waiting = CancellationTokenSource.CreateLinkedTokenSource(stop, due?.Token ?? default);
                try
                {
                    await wake.WaitOrCancelAsync(waiting.Token);
                }
                catch (OperationCanceledException) when (!stop.IsCancellationRequested)
                {
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    /// <summary>Brings the reservations in line with the reachability; returns when to look again (null: when something changes).</summary>
    private async Task<TimeSpan?> ReconcileAsync(CancellationToken cancellationToken)
    {
        if (!CanReserve) return null;
        var now = _host.TimeProvider.GetUtcNow();
        var (wanted, recheck) = WantRelays(now);
        if (!wanted)
        {
            await DropAsync(_ => true, "reachability is public", cancellationToken);
            return recheck;
        }
        // A reservation taken or dropped changes the host's listeners, and so raises AnnouncedAddressesChanged.
        await DropAsync(h => h.LostSince is { } lost && now - lost >= _settings.RelaySearchInterval,
            "the relay did not take us back", cancellationToken);
        if (HeldCount < _settings.MaxReservations) await ReserveAsync(_settings.MaxReservations - HeldCount, cancellationToken);
        if (HeldCount < _settings.MaxReservations) return _settings.RelaySearchInterval;
        lock (_gate)
        {
            var lostSince = _held.Values.Where(h => h.LostSince is not null).Select(h => h.LostSince!.Value).DefaultIfEmpty().Min();
            return lostSince == default ? null : Max(lostSince + _settings.RelaySearchInterval - now, MinRecheck);
        }
    }

    private (bool Wanted, TimeSpan? Recheck) WantRelays(DateTimeOffset now)
    {
        // Without AutoNAT nothing says whether we are reachable: configured relays are the operator's answer.
        if (_autoNatClient is null) return (_options.Relays.Count > 0, null);
        switch (_autoNatClient.Status.Reachability)
        {
            case NatReachability.Private:
                return (true, null);
            case NatReachability.Public:
                return (false, null);
            default:
                var undecided = now - _startedAt;
                return undecided >= _settings.UnknownReachabilityGrace
                    ? (true, null)
                    // A floor: a clock coarser than the remainder (a node's skewed clock) would otherwise wake us at once, again and again.
                    : (false, Max(_settings.UnknownReachabilityGrace - undecided, MinRecheck));
        }
    }

    private async Task ReserveAsync(int wanted, CancellationToken cancellationToken)
    {
        var reserved = 0;
        var tried = 0;
        foreach (var (relay, addresses) in await CandidatesAsync(cancellationToken))
        {
            if (reserved == wanted || tried == MaxCandidatesPerRound) break;
            lock (_gate)
            {
                if (_held.ContainsKey(relay)) continue;
            }
            tried++;
            if (await TryReserveAsync(relay, addresses, cancellationToken)) reserved++;
        }
        if (reserved < wanted)
            _logger.LogInformation("holding {Held} of {Wanted} relay reservations; looking again in {Interval}", HeldCount, _settings.MaxReservations, _settings.RelaySearchInterval);
    }

    /// <summary>The configured relays, then the DHT's, each with the addresses to reach it on (never a circuit address).</summary>
    private async Task<List<(PeerId Relay, IReadOnlyList<Multiaddress> Addresses)>> CandidatesAsync(CancellationToken cancellationToken)
    {
        var result = new List<(PeerId, IReadOnlyList<Multiaddress>)>();
        foreach (var address in _options.Relays)
        {
            if (address.PeerId is { } peer && peer != _host.PeerId) result.Add((peer, [address.WithoutPeerId()]));
        }
        if (!_settings.DiscoverRelays) return result;
        IReadOnlyList<DiscoveredPeer> found;
        try
        {
            found = await _discovery.LookupAsync(RelayTopic, cancellationToken);
        }
        catch (Exception e) when (e is not (OperationCanceledException or OutOfMemoryException))
        {
            _logger.LogInformation("looking relays up in the DHT failed: {Reason}", e.Message);
            return result;
        }
        foreach (var provider in found)
        {
            if (provider.PeerId == _host.PeerId || result.Any(r => r.Item1 == provider.PeerId)) continue;
            var direct = provider.Addresses.Where(a => !CircuitAddress.IsCircuit(a)).Select(a => a.WithoutPeerId()).Distinct().ToArray();
            if (direct.Length > 0) result.Add((provider.PeerId, direct));
        }
        return result;
    }

    private async Task<bool> TryReserveAsync(PeerId relay, IReadOnlyList<Multiaddress> addresses, CancellationToken cancellationToken)
    {
        foreach (var address in addresses)
        {
            var listen = address.WithPeerId(relay).Encapsulate(CircuitSuffix);
            try
            {
                await _host.StartAsync([listen], cancellationToken);
            }
            catch (Exception e) when (e is IOException or TimeoutException)
            {
                _logger.LogInformation("could not reserve on relay {Relay} at {Address}: {Reason}", relay, address, e.Message);
                continue;
            }
            var reservation = _circuit!.Reservations.FirstOrDefault(r => r.Relay == relay);
            if (reservation is null)
            {
                // Gone between the reservation and now (the relay connection closed at once).
                await _host.StopListeningAsync(listen);
                continue;
            }
            var held = new HeldReservation(listen, reservation);
            reservation.Lost += _ => OnLost(relay, held);
            reservation.Renewed += _ => OnRenewed(relay, held);
            lock (_gate) _held[relay] = held;
            _logger.LogInformation("reserved a slot on relay {Relay} until {Expires:u}; reachable at {Addresses}",
                relay, reservation.Expires, string.Join(", ", reservation.Addresses));
            RaiseChanged();
            return true;
        }
        return false;
    }

    private void OnLost(PeerId relay, HeldReservation held)
    {
        lock (_gate)
        {
            if (!_held.TryGetValue(relay, out var current) || current != held) return;
            held.LostSince = _host.TimeProvider.GetUtcNow();
        }
        _logger.LogInformation("lost the reservation on relay {Relay}; another replaces it unless it is back within {Interval}", relay, _settings.RelaySearchInterval);
        Wake();
        RaiseChanged();
    }

    private void OnRenewed(PeerId relay, HeldReservation held)
    {
        bool regained;
        lock (_gate)
        {
            regained = held.LostSince is not null && _held.TryGetValue(relay, out var current) && current == held;
            held.LostSince = null;
        }
        if (!regained) return;
        _logger.LogInformation("the reservation on relay {Relay} is back", relay);
        RaiseChanged();
    }

    private async Task DropAsync(Func<HeldReservation, bool> which, string reason, CancellationToken cancellationToken)
    {
        List<(PeerId Relay, HeldReservation Held)> dropped;
        lock (_gate)
        {
            dropped = _held.Where(p => which(p.Value)).Select(p => (p.Key, p.Value)).ToList();
            foreach (var (relay, _) in dropped) _held.Remove(relay);
        }
        foreach (var (relay, held) in dropped)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await _host.StopListeningAsync(held.ListenAddress);
            _logger.LogInformation("dropped the reservation on relay {Relay}: {Reason}", relay, reason);
        }
        if (dropped.Count > 0) RaiseChanged();
    }

    private async Task AddressesChangedAsync(CancellationToken cancellationToken)
    {
        if (_options.AddressesChanged is not { } callback) return;
        try
        {
            await callback(cancellationToken);
        }
        catch (Exception e) when (e is not (OperationCanceledException or OutOfMemoryException))
        {
            _logger.LogWarning("announcing the new addresses failed (the discovery re-announces on its own timer): {Reason}", e.Message);
        }
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        // Cancel, not CancelAsync: CancelAsync runs the callbacks off a simulation's thread.
        _stopping.Cancel();
        _host.AnnouncedAddressesChanged -= OnAnnouncedAddressesChanged;
        if (_loop is not null) await _loop;
        if (_autoNatClient is not null)
        {
            _autoNatClient.StatusChanged -= OnStatusChanged;
            await _autoNatClient.DisposeAsync();
        }
        _autoNatServer?.Dispose();
        RelayService?.Dispose();
        if (HolePunching is not null) await HolePunching.DisposeAsync();
        _stopping.Dispose();
    }

    private sealed class HeldReservation(Multiaddress listenAddress, RelayReservation reservation)
    {
        public Multiaddress ListenAddress { get; } = listenAddress;

        public RelayReservation Reservation { get; } = reservation;

        public DateTimeOffset? LostSince { get; set; }
    }
}
