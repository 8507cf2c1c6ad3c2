using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Inference;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class StatusResponse
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<StatusResponse> Parser => MessagePackRpcCodec<StatusResponse>.Instance;

    [Key(0)]
    public int Active { get; set; }

    [Key(1)]
    public int Queued { get; set; }

    [Key(2)]
    public int MaxConcurrency { get; set; }

    [Key(3)]
    public int MaxQueue { get; set; }

    [Key(4)]
    public List<ModelInfo> Models { get; init; } = [];

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
