using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class ValidateResponse
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<ValidateResponse> Parser => MessagePackRpcCodec<ValidateResponse>.Instance;

    [Key(0)]
    public string UserId { get; set; } = "";

    [Key(1)]
    public string Email { get; set; } = "";

    [Key(2)]
    public Quota? Quota { get; set; }

    /// <summary>Set when the credential was an API key.</summary>
    [Key(3)]
    public string KeyId { get; set; } = "";

    /// <summary>Set when the credential was a token: when it stops being accepted.</summary>
    [Key(4)]
    public long ExpiresAtUnixMs { get; set; }

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
