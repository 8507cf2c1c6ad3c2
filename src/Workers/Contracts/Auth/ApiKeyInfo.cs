using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class ApiKeyInfo
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<ApiKeyInfo> Parser => MessagePackRpcCodec<ApiKeyInfo>.Instance;

    [Key(0)]
    public string KeyId { get; set; } = "";

    [Key(1)]
    public string Name { get; set; } = "";

    [Key(2)]
    public long CreatedAtUnixMs { get; set; }

    [Key(3)]
    public bool Revoked { get; set; }

    /// <summary>The key's last four characters, so a user can tell keys apart; never the key.</summary>
    [Key(4)]
    public string Last4 { get; set; } = "";

    [Key(5)]
    public long RevokedAtUnixMs { get; set; }

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
