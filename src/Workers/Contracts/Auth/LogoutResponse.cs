using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class LogoutResponse
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<LogoutResponse> Parser => MessagePackRpcCodec<LogoutResponse>.Instance;

    /// <summary>The user whose token was revoked.</summary>
    [Key(0)]
    public string UserId { get; set; } = "";

    /// <summary>When the token would have expired anyway; the revocation is kept until then.</summary>
    [Key(1)]
    public long ExpiresAtUnixMs { get; set; }

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
