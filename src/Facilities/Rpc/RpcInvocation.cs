using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>A decoded inbound call, as the real node reads it off a stream and the TestKit twin hands it over.</summary>
internal sealed record RpcInvocation(
    PeerId Caller,
    string Method,
    ReadOnlyMemory<byte> Payload,
    TimeSpan? Timeout,
    string RequestId,
    string TraceId,
    IReadOnlyDictionary<string, string> Metadata,
    bool Streaming);
