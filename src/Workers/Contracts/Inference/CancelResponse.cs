using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Inference;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class CancelResponse
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<CancelResponse> Parser => MessagePackRpcCodec<CancelResponse>.Instance;

    /// <summary>False when no request with that id was running for the caller.</summary>
    [Key(0)]
    public bool Cancelled { get; set; }

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
