using P2PInference.Facilities.Addressing;

namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>
/// A relay's answer to RESERVE as on the wire: when the slot ends (whole seconds, as the protocol
/// carries it), the relay's addresses to build circuit addresses from, and the voucher if any (we
/// neither send nor check one; the spec leaves that optional).
/// </summary>
public sealed record RelayReservationInfo(DateTimeOffset Expires, IReadOnlyList<Multiaddress> Addresses, ReadOnlyMemory<byte> Voucher);
