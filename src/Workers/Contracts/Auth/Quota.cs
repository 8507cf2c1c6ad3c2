using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class Quota
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<Quota> Parser => MessagePackRpcCodec<Quota>.Instance;

    [Key(0)]
    public uint RequestsPerMinute { get; set; }

    [Key(1)]
    public uint Burst { get; set; }

    /// <summary>A copy that can be changed without touching this one.</summary>
    public Quota Clone()
    {
        var copy = (Quota)MemberwiseClone();
        return copy;
    }

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
