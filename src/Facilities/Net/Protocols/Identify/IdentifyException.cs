namespace P2PInference.Facilities.Net.Protocols.Identify;

/// <summary>A peer's identify message was missing, unusable, or not about the peer we are connected to.</summary>
public sealed class IdentifyException(string message, Exception? inner = null)
    : WireProtocolException(IdentifyProtocol.ProtocolId, message, inner);
