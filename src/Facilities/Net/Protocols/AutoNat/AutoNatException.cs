namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>
/// An AutoNAT message decoded as protobuf but made no sense: the wrong message type, no dial or
/// dial response in it, a peer id that is not one, a status the protocol does not define.
/// </summary>
public sealed class AutoNatException(string message, Exception? inner = null)
    : WireProtocolException(AutoNatMessageCodec.ProtocolId, message, inner);
