using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Inference;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class InferRequest
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<InferRequest> Parser => MessagePackRpcCodec<InferRequest>.Instance;

    /// <summary>Set by the client or the gateway; appears in every hop's logs.</summary>
    [Key(0)]
    public string RequestId { get; set; } = "";

    [Key(1)]
    public string Model { get; set; } = "";

    [Key(2)]
    public string Prompt { get; set; } = "";

    [Key(3)]
    public int MaxTokens { get; set; }

    [Key(4)]
    public double Temperature { get; set; }

    [Key(5)]
    public long? Seed { get; set; }

    [Key(6)]
    public List<string> Stop { get; init; } = [];

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
