using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>Stored under api-keys/&lt;key id&gt;. The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class ApiKeyRecord
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<ApiKeyRecord> Parser => MessagePackRpcCodec<ApiKeyRecord>.Instance;

    [Key(0)]
    public string KeyId { get; set; } = "";

    [Key(1)]
    public string UserId { get; set; } = "";

    [Key(2)]
    public string Name { get; set; } = "";

    /// <summary>SHA-256 of the key's UTF-8 bytes.</summary>
    [Key(3)]
    public byte[] KeyHash { get; set; } = [];

    [Key(4)]
    public string Last4 { get; set; } = "";

    [Key(5)]
    public long CreatedAtUnixMs { get; set; }

    [Key(6)]
    public bool Revoked { get; set; }

    [Key(7)]
    public long RevokedAtUnixMs { get; set; }

    /// <summary>A copy that can be changed without touching this one.</summary>
    public ApiKeyRecord Clone()
    {
        var copy = (ApiKeyRecord)MemberwiseClone();
        copy.KeyHash = [.. KeyHash];
        return copy;
    }

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
