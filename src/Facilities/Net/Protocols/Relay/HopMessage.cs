namespace P2PInference.Facilities.Net.Protocols.Relay;

public enum HopMessageType
{
    Reserve = 0,
    Connect = 1,
    Status = 2,
}

/// <summary>A message on the <c>/libp2p/circuit/relay/0.2.0/hop</c> protocol (client ↔ relay).</summary>
public sealed record HopMessage(HopMessageType Type, RelayPeerInfo? Peer = null, RelayReservationInfo? Reservation = null,
    RelayLimit? Limit = null, RelayStatus? Status = null)
{
    public static HopMessage Answer(RelayStatus status) => new(HopMessageType.Status, Status: status);
}
