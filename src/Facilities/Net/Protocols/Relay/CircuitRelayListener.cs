using System.Threading.Channels;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>
/// Listening through one relay: holds the reservation there, and yields the connections the relay
/// hands us on <c>/stop</c> to the host, which upgrades them like any inbound connection.
/// <see cref="Address"/> is the relay's circuit address (<c>…/p2p/RELAY/p2p-circuit</c>), so the
/// host advertises <c>…/p2p-circuit/p2p/SELF</c> in identify.
/// </summary>
public sealed class CircuitRelayListener : ITransportListener
{
    private readonly CircuitRelayTransport _transport;
    private readonly Channel<RawConnection> _backlog;
    private readonly int _capacity;

    internal CircuitRelayListener(CircuitRelayTransport transport, Multiaddress address, RelayReservation reservation, int backlog)
    {
        _transport = transport;
        Address = address;
        Reservation = reservation;
        _capacity = backlog;
        _backlog = Channel.CreateBounded<RawConnection>(new BoundedChannelOptions(backlog) { FullMode = BoundedChannelFullMode.Wait });
    }

    public Multiaddress Address { get; }

    public RelayReservation Reservation { get; }

    public async ValueTask<RawConnection> AcceptAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _backlog.Reader.ReadAsync(cancellationToken);
        }
        catch (ChannelClosedException)
        {
            throw new ObjectDisposedException(nameof(CircuitRelayListener), $"the listener on {Address} was closed");
        }
    }

    /// <summary>Whether a relayed connection would be queued now (the backlog is not full and the listener is open).</summary>
    internal bool HasRoom => !_backlog.Reader.Completion.IsCompleted && _backlog.Reader.Count < _capacity;

    /// <summary>Queues a relayed connection; false when the backlog is full or the listener closed.</summary>
    internal bool TryOffer(RawConnection raw) => _backlog.Writer.TryWrite(raw);

    public async ValueTask DisposeAsync()
    {
        _transport.Remove(this);
        if (_backlog.Writer.TryComplete())
        {
            while (_backlog.Reader.TryRead(out var pending))
                await pending.DisposeAsync();
        }
        await Reservation.DisposeAsync();
    }
}
