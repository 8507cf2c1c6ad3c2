namespace P2PInference.Facilities.Net.Protocols.Ping;

/// <summary>The remote did not echo a ping payload intact, or the stream ended mid-round.</summary>
public sealed class PingException(string message, Exception? inner = null)
    : WireProtocolException(PingProtocol.ProtocolId, message, inner);
