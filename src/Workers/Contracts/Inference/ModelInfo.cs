using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Inference;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class ModelInfo
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<ModelInfo> Parser => MessagePackRpcCodec<ModelInfo>.Instance;

    [Key(0)]
    public string Name { get; set; } = "";

    [Key(1)]
    public string Description { get; set; } = "";

    [Key(2)]
    public int MaxTokens { get; set; }

    /// <summary>How many processors serve the model (filled in by gateways).</summary>
    [Key(3)]
    public int Processors { get; set; }

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
