using MessagePack;

namespace P2PInference.Facilities.Rpc.Wire;

/// <summary>A failed call on the wire. The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class RpcError
{
    /// <summary>An <see cref="RpcStatusCode"/>; a code this version does not know arrives as Internal.</summary>
    [Key(0)]
    public int Code { get; set; }

    [Key(1)]
    public string Message { get; set; } = "";

    [Key(2)]
    public Dictionary<string, string> Details { get; init; } = [];
}
