namespace P2PInference.Facilities.Net.Multistream;

/// <summary>A multistream-select negotiation failed; the stream is unusable and should be closed.</summary>
public sealed class MultistreamException(MultistreamFailure reason, string message, Exception? inner = null)
    : WireProtocolException(MultistreamSelect.ProtocolId, message, inner)
{
    public MultistreamFailure Reason { get; } = reason;
}
