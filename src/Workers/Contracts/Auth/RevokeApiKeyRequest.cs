using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class RevokeApiKeyRequest
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<RevokeApiKeyRequest> Parser => MessagePackRpcCodec<RevokeApiKeyRequest>.Instance;

    [Key(0)]
    public string Token { get; set; } = "";

    [Key(1)]
    public string KeyId { get; set; } = "";

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
