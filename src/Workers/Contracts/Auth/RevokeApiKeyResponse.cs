using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class RevokeApiKeyResponse
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<RevokeApiKeyResponse> Parser => MessagePackRpcCodec<RevokeApiKeyResponse>.Instance;

    [Key(0)]
    public string KeyId { get; set; } = "";

    /// <summary>False when the key had already been revoked (revoking is idempotent).</summary>
    [Key(1)]
    public bool NewlyRevoked { get; set; }

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
