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

    /// <summary>Tokens generated (the completion tokens of <see cref="CompletionTokens"/>'s sense, kept for older readers).</summary>
    [Key(3)]
    public int Tokens { get; set; }

    [Key(4)]
    public string FinishReason { get; set; } = "";

    /// <summary>The processor that served the request.</summary>
    [Key(5)]
    public string Processor { get; set; } = "";

    /// <summary>Tokens of the input the model read, as the engine counts them.</summary>
    [Key(6)]
    public int PromptTokens { get; set; }

    /// <summary>Tokens generated, as the engine counts them.</summary>
    [Key(7)]
    public int CompletionTokens { get; set; }

    /// <summary>Milliseconds the request waited for a slot on the processor.</summary>
    [Key(8)]
    public long QueueMs { get; set; }

    /// <summary>Milliseconds from the start of generation to its end, on the processor.</summary>
    [Key(9)]
    public long GenerationMs { get; set; }

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
