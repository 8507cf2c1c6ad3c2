namespace P2PInference.Facilities.Net.Protocols.Dcutr;

/// <summary>
/// A DCUtR message decoded as protobuf but broke the protocol: an undefined type, or a type the
/// exchange does not expect at that point (a SYNC where a CONNECT is due, or the other way round).
/// </summary>
public sealed class DcutrException(string message, Exception? inner = null)
    : WireProtocolException(HolePunchMessageCodec.ProtocolId, message, inner);
