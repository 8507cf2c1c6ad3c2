using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class RevokeAllTokensRequest
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<RevokeAllTokensRequest> Parser => MessagePackRpcCodec<RevokeAllTokensRequest>.Instance;

    /// <summary>The login token presented: proves who the user is.</summary>
    [Key(0)]
    public string Token { get; set; } = "";

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
