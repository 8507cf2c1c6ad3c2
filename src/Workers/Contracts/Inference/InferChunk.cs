using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Inference;

/// <summary>One streamed token. The last chunk carries finish_reason. The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class InferChunk
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<InferChunk> Parser => MessagePackRpcCodec<InferChunk>.Instance;

    [Key(0)]
    public string RequestId { get; set; } = "";

    [Key(1)]
    public string Text { get; set; } = "";

    [Key(2)]
    public int Index { get; set; }

    [Key(3)]
    public string FinishReason { get; set; } = "";

    [Key(4)]
    public string Processor { get; set; } = "";

    /// <summary>On the last chunk: tokens of the input the model read.</summary>
    [Key(5)]
    public int PromptTokens { get; set; }

    /// <summary>On the last chunk: tokens generated.</summary>
    [Key(6)]
    public int CompletionTokens { get; set; }

    /// <summary>On the last chunk: milliseconds the request waited for a slot on the processor.</summary>
    [Key(7)]
    public long QueueMs { get; set; }

    /// <summary>On the last chunk: milliseconds from the start of generation to its end.</summary>
    [Key(8)]
    public long GenerationMs { get; set; }

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
