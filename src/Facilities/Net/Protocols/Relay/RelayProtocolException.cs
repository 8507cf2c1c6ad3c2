namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>
/// A relay message decoded as protobuf but broke the protocol: an undefined type or status, a peer
/// id that is not one, a message the exchange does not expect at that point. <see cref="Status"/>
/// is what the other side is told (MALFORMED_MESSAGE or UNEXPECTED_MESSAGE).
/// </summary>
public sealed class RelayProtocolException(string message, RelayStatus status = RelayStatus.MalformedMessage, Exception? inner = null)
    : WireProtocolException(RelayMessageCodec.HopProtocolId, message, inner)
{
    public RelayStatus Status { get; } = status;
}
