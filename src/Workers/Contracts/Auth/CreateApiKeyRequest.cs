using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class CreateApiKeyRequest
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<CreateApiKeyRequest> Parser => MessagePackRpcCodec<CreateApiKeyRequest>.Instance;

    [Key(0)]
    public string Token { get; set; } = "";

    [Key(1)]
    public string Name { get; set; } = "";

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
