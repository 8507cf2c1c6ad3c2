using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class LoginResponse
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<LoginResponse> Parser => MessagePackRpcCodec<LoginResponse>.Instance;

    /// <summary>Compact JWS (EdDSA over Ed25519), signed by the Auth worker's key.</summary>
    [Key(0)]
    public string Token { get; set; } = "";

    [Key(1)]
    public long ExpiresAtUnixMs { get; set; }

    [Key(2)]
    public string UserId { get; set; } = "";

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
