using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Inference;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class InferResponse
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<InferResponse> Parser => MessagePackRpcCodec<InferResponse>.Instance;

    [Key(0)]
    public string RequestId { get; set; } = "";

    [Key(1)]
    public string Model { get; set; } = "";

    [Key(2)]
    public string Text { get; set; } = "";

    [Key(3)]
    public int Tokens { get; set; }

    [Key(4)]
    public string FinishReason { get; set; } = "";

    /// <summary>The processor that served the request.</summary>
    [Key(5)]
    public string Processor { get; set; } = "";

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
