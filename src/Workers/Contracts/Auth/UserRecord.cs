using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>Stored under users/&lt;normalized email&gt;. The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class UserRecord
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<UserRecord> Parser => MessagePackRpcCodec<UserRecord>.Instance;

    [Key(0)]
    public string UserId { get; set; } = "";

    [Key(1)]
    public string Email { get; set; } = "";

    /// <summary>PasswordHasher's encoding: algorithm, iterations, salt and hash.</summary>
    [Key(2)]
    public string PasswordHash { get; set; } = "";

    [Key(3)]
    public long CreatedAtUnixMs { get; set; }

    /// <summary>A per-user override; absent means AuthOptions.DefaultQuota.</summary>
    [Key(4)]
    public Quota? Quota { get; set; }

    /// <summary>Tokens issued before this time (a whole second; 0: none) are refused: the user's last "revoke all tokens".</summary>
    [Key(5)]
    public long TokensValidFromUnixMs { get; set; }

    /// <summary>A copy that can be changed without touching this one.</summary>
    public UserRecord Clone()
    {
        var copy = (UserRecord)MemberwiseClone();
        copy.Quota = Quota?.Clone();
        return copy;
    }

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
