using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Inference;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class ModelsRequest
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<ModelsRequest> Parser => MessagePackRpcCodec<ModelsRequest>.Instance;

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
