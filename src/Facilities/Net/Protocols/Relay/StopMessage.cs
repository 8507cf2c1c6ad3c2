namespace P2PInference.Facilities.Net.Protocols.Relay;

public enum StopMessageType
{
    Connect = 0,
    Status = 1,
}

/// <summary>A message on the <c>/libp2p/circuit/relay/0.2.0/stop</c> protocol (relay ↔ target).</summary>
public sealed record StopMessage(StopMessageType Type, RelayPeerInfo? Peer = null, RelayLimit? Limit = null, RelayStatus? Status = null)
{
    public static StopMessage Answer(RelayStatus status) => new(StopMessageType.Status, Status: status);
}
