using MessagePack;

namespace P2PInference.Facilities.Rpc.Wire;

/// <summary>
/// What a server sends back: a unary call gets exactly one frame (payload or error); a streaming
/// call any number of payload frames, then one end or error frame. Exactly one of the members is set.
/// The keys are the wire contract (fixtures/contracts): never renumber or reuse them.
/// </summary>
[MessagePackObject]
public sealed class ResponseFrame
{
    [Key(0)]
    public ReadOnlyMemory<byte>? Payload { get; set; }

    [Key(1)]
    public RpcError? Error { get; set; }

    [Key(2)]
    public bool End { get; set; }

    /// <summary>Which member is set; <see cref="ResponseFrameKind.Invalid"/> for none or several.</summary>
    [IgnoreMember]
    public ResponseFrameKind Kind =>
        (Payload.HasValue ? 1 : 0) + (Error is null ? 0 : 1) + (End ? 1 : 0) != 1 ? ResponseFrameKind.Invalid
        : Payload.HasValue ? ResponseFrameKind.Payload
        : Error is not null ? ResponseFrameKind.Error
        : ResponseFrameKind.End;
}
