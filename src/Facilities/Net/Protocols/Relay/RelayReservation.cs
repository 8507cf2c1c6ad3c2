using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>
/// A slot held on a relay: until when, the circuit addresses others reach us at
/// (<c>…/p2p/RELAY/p2p-circuit/p2p/SELF</c>), and the limit of connections through it. Renewed on
/// the host's clock at <see cref="CircuitRelayOptions.RefreshAt"/> of its remaining time; when the
/// relay connection closes (the relay drops the slot with it) or a renewal fails past the expiry,
/// it is lost (<see cref="IsActive"/> false, <see cref="Lost"/>) and retried every
/// <see cref="CircuitRelayOptions.RetryInterval"/> until it comes back (<see cref="Renewed"/>).
/// The relay connection is kept open while the reservation is held. Disposing stops the renewals;
/// the relay lets the slot run out (the protocol has no cancel).
/// </summary>
public sealed class RelayReservation : IAsyncDisposable
{
    private readonly CircuitRelayTransport _transport;
    private readonly CircuitRelayOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _lock = new();
    private PeerConnection? _connection;
    private Task _maintenance = Task.CompletedTask;
    private bool _lost;
    private int _disposed;

    internal RelayReservation(CircuitRelayTransport transport, CircuitAddress relay, PeerId self, CircuitRelayOptions options, TimeProvider time, ILogger logger)
    {
        _transport = transport;
        _options = options;
        _time = time;
        _logger = logger;
        Relay = relay.Relay;
        RelayAddress = relay.RelayAddress;
        Self = self;
    }

    public PeerId Relay { get; }

    /// <summary>The relay's address as dialled, ending in <c>/p2p/RELAY</c>.</summary>
    public Multiaddress RelayAddress { get; }

    private PeerId Self { get; }

    /// <summary>When the relay drops the slot unless it is renewed (whole seconds, as the relay said).</summary>
    public DateTimeOffset Expires { get; private set; }

    /// <summary>Where others dial us through the relay: <c>…/p2p/RELAY/p2p-circuit/p2p/SELF</c>, one per relay address.</summary>
    public IReadOnlyList<Multiaddress> Addresses { get; private set; } = [];

    /// <summary>What each connection through the relay may use.</summary>
    public RelayLimit Limit { get; private set; } = RelayLimit.Unlimited;

    /// <summary>Renewals that succeeded, the first reservation not counted.</summary>
    public int Renewals { get; private set; }

    public bool IsActive
    {
        get
        {
            lock (_lock) return !_lost && Expires > _time.GetUtcNow();
        }
    }

    /// <summary>Raised after each successful renewal, and when a lost reservation is back.</summary>
    public event Action<RelayReservation>? Renewed;

    /// <summary>Raised when the relay connection closed or the slot ran out before a renewal got through.</summary>
    public event Action<RelayReservation>? Lost;

    internal void Start(RelayReservationInfo info, RelayLimit? limit, PeerConnection connection)
    {
        Apply(info, limit, connection);
        _maintenance = MaintainAsync();
    }

    private void Apply(RelayReservationInfo info, RelayLimit? limit, PeerConnection connection)
    {
        PeerConnection? previous;
        lock (_lock)
        {
            previous = _connection;
            if (previous != connection)
            {
                connection.KeepOpen();
                _connection = connection;
            }
            Expires = info.Expires;
            Limit = limit ?? RelayLimit.Unlimited;
            Addresses = CircuitAddressesOf(info.Addresses);
            _lost = false;
        }
        if (previous is not null && previous != connection) previous.ReleaseKeepOpen();
    }

    /// <summary>The relay's addresses as circuit addresses to us; the address we dialled when it gave none we can use.</summary>
    private List<Multiaddress> CircuitAddressesOf(IReadOnlyList<Multiaddress> relayAddresses)
    {
        var circuits = new List<Multiaddress>();
        foreach (var address in relayAddresses)
        {
            var plain = address;
            if (CircuitAddress.TryParse(address, out var circuit)) plain = circuit.RelayAddress;
            else if (CircuitAddress.IsCircuit(address)) continue;
            if (plain.PeerId is { } named && named != Relay) continue;
            var result = CircuitAddress.For(plain, Relay, Self);
            if (!circuits.Contains(result)) circuits.Add(result);
        }
        if (circuits.Count == 0) circuits.Add(CircuitAddress.For(RelayAddress, Relay, Self));
        return circuits;
    }

    private async Task MaintainAsync()
    {
        await Task.Yield();
        var stop = _stop.Token;
        while (!stop.IsCancellationRequested)
        {
            PeerConnection? connection;
            bool lost;
            TimeSpan wait;
            lock (_lock)
            {
                connection = _connection;
                lost = _lost;
                var remaining = Expires - _time.GetUtcNow();
                wait = lost || remaining <= TimeSpan.Zero
                    ? _options.RetryInterval
                    : TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerSecond, (long)(remaining.Ticks * _options.RefreshAt)));
            }
            using (var waiting = CancellationTokenSource.CreateLinkedTokenSource(stop))
            {
                var delay = Task.Delay(wait, _time, waiting.Token);
                var closed = !lost && connection is not null ? connection.Completion : null;
                var first = closed is null ? delay : await ContextAwaits.FirstOfAsync(delay, closed);
                // Cancel, not CancelAsync: CancelAsync runs the callbacks off a simulation's thread.
                if (first != delay) waiting.Cancel();
                try
                {
                    await delay;
                }
                catch (OperationCanceledException)
                {
                }
                if (stop.IsCancellationRequested) return;
                if (first != delay)
                {
                    MarkLost("the connection to the relay closed");
                    continue;
                }
            }
            await RenewAsync(stop);
        }
    }

    private async Task RenewAsync(CancellationToken stop)
    {
        try
        {
            var (info, limit, connection) = await _transport.RequestReservationAsync(RelayAddress, stop);
            bool wasLost;
            lock (_lock) wasLost = _lost;
            Apply(info, limit, connection);
            Renewals++;
            _logger.LogDebug("reservation on {Relay} {Action} until {Expires}", Relay, wasLost ? "regained" : "renewed", info.Expires);
            EventSubscribers.Raise(Renewed, this, _logger, $"{nameof(RelayReservation)}.{nameof(Renewed)}");
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Whatever the failure, the loop goes on: a reservation that stops retrying is silently lost for good.
            if (stop.IsCancellationRequested) return;
            _logger.LogDebug(e, "renewing the reservation on {Relay} failed", Relay);
            if (_time.GetUtcNow() >= Expires) MarkLost("the renewal failed: " + e.Message);
        }
    }

    private void MarkLost(string reason)
    {
        PeerConnection? connection;
        lock (_lock)
        {
            if (_lost) return;
            _lost = true;
            connection = _connection;
            _connection = null;
        }
        connection?.ReleaseKeepOpen();
        _logger.LogInformation("lost the reservation on {Relay}: {Reason}", Relay, reason);
        EventSubscribers.Raise(Lost, this, _logger, $"{nameof(RelayReservation)}.{nameof(Lost)}");
    }


    public override string ToString() => $"reservation on {Relay} until {Expires:u}{(IsActive ? "" : " (lost)")}";

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        // Cancel, not CancelAsync: CancelAsync runs the callbacks off a simulation's thread.
        _stop.Cancel();
        await _maintenance.ObserveFailureAsync();
        PeerConnection? connection;
        lock (_lock)
        {
            connection = _connection;
            _connection = null;
        }
        connection?.ReleaseKeepOpen();
        _stop.Dispose();
    }
}
