using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class RegisterResponse
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<RegisterResponse> Parser => MessagePackRpcCodec<RegisterResponse>.Instance;

    [Key(0)]
    public string UserId { get; set; } = "";

    /// <summary>The normalized (lower-case, trimmed) address the account is known by.</summary>
    [Key(1)]
    public string Email { get; set; } = "";

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
