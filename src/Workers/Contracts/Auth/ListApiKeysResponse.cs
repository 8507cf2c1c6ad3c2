using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class ListApiKeysResponse
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<ListApiKeysResponse> Parser => MessagePackRpcCodec<ListApiKeysResponse>.Instance;

    [Key(0)]
    public List<ApiKeyInfo> Keys { get; init; } = [];

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
