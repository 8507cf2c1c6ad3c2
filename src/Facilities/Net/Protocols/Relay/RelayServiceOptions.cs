using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>
/// Limits of a <see cref="RelayService"/>. The defaults follow go-libp2p's relay (128 reservations,
/// one hour each, 2 minutes and 128 KiB per relayed connection): a relay is there to get two peers
/// started (and hole punching), not to carry their traffic.
/// </summary>
public sealed record RelayServiceOptions
{
    /// <summary>Reservations held at once, across all peers.</summary>
    public int MaxReservations { get; init; } = 128;

    /// <summary>
    /// Reservations held by peers behind one remote address (its <see cref="Addressing.AddressOrigin"/>):
    /// peer ids cost nothing to mint, addresses do. A peer holds at most one reservation; asking again renews it.
    /// Not applied to peers on loopback, nor behind a proxy (<see cref="Host.HostOptions.InboundPeersArePublic"/>),
    /// whose address says nothing about who they are (<see cref="Host.PeerConnection.Origin"/>).
    /// </summary>
    public int MaxReservationsPerAddress { get; init; } = 4;

    /// <summary>How long a reservation lasts; the holder renews it before then.</summary>
    public TimeSpan ReservationTtl { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Relayed connections open at once, across all peers.</summary>
    public int MaxCircuits { get; init; } = 64;

    /// <summary>Relayed connections open at once with one peer at either end.</summary>
    public int MaxCircuitsPerPeer { get; init; } = 4;

    /// <summary>What each relayed connection may use, sent to both ends; <see cref="RelayLimit.Unlimited"/> relays without end.</summary>
    public RelayLimit ConnectionLimit { get; init; } = new(TimeSpan.FromMinutes(2), 128 * 1024);

    /// <summary>Bytes buffered per direction of a relayed connection; Yamux's window holds back the sender beyond it.</summary>
    public int BufferSize { get; init; } = 4096;

    /// <summary>How long a request may take to arrive, and the target to answer the relay's STOP CONNECT.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Who may reserve; everyone when null. Others are answered RESERVATION_REFUSED.</summary>
    public Func<PeerId, bool>? AllowReservation { get; init; }

    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;
}
