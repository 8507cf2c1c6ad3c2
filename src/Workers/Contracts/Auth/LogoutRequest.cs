using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class LogoutRequest
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<LogoutRequest> Parser => MessagePackRpcCodec<LogoutRequest>.Instance;

    /// <summary>The login token presented: the one revoked.</summary>
    [Key(0)]
    public string Token { get; set; } = "";

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
