using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>
/// A decoded inbound call, as the real node reads it off a stream and the TestKit twin hands it over.
/// <paramref name="CallerAddress"/> is where the caller's connection comes from, when known, and
/// <paramref name="CallerOrigin"/> what limits per address count it under (<see cref="RpcCallContext.RemoteOrigin"/>).
/// </summary>
internal sealed record RpcInvocation(
    PeerId Caller,
    string Method,
    ReadOnlyMemory<byte> Payload,
    TimeSpan? Timeout,
    string RequestId,
    string TraceId,
    IReadOnlyDictionary<string, string> Metadata,
    bool Streaming,
    Multiaddress? CallerAddress,
    string? CallerOrigin);
