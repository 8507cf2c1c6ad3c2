using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class RevokeAllTokensResponse
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<RevokeAllTokensResponse> Parser => MessagePackRpcCodec<RevokeAllTokensResponse>.Instance;

    /// <summary>The user whose tokens were revoked.</summary>
    [Key(0)]
    public string UserId { get; set; } = "";

    /// <summary>Tokens issued before this time (a whole second) are refused; later logins are not affected.</summary>
    [Key(1)]
    public long RevokedBeforeUnixMs { get; set; }

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
