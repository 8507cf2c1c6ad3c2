using MessagePack;

namespace P2PInference.Facilities.Rpc.Wire;

/// <summary>
/// The first and only message a client sends on an RPC stream (wire format: <see cref="RpcNode"/>).
/// The keys are the wire contract (fixtures/contracts): never renumber or reuse them.
/// </summary>
/// <remarks>
/// The deadline travels as the time REMAINING when the request was sent, not as a wall-clock
/// instant, so clock skew between peers does not shorten or stretch it; each server turns it back
/// into a deadline on its own clock when the envelope arrives.
/// </remarks>
[MessagePackObject]
public sealed class RequestEnvelope
{
    [Key(0)]
    public string Method { get; set; } = "";

    [Key(1)]
    public ReadOnlyMemory<byte> Payload { get; set; }

    /// <summary>Milliseconds left until the caller's deadline; 0 = no deadline.</summary>
    [Key(2)]
    public long TimeoutMs { get; set; }

    /// <summary>Shared by every call made on behalf of one user request (propagated through the workers).</summary>
    [Key(3)]
    public string TraceId { get; set; } = "";

    /// <summary>Names this one call (logs, deduplication of retried idempotent calls).</summary>
    [Key(4)]
    public string RequestId { get; set; } = "";

    [Key(5)]
    public Dictionary<string, string> Metadata { get; init; } = [];

    /// <summary>The client expects a streaming response; a method of the other kind answers InvalidArgument.</summary>
    [Key(6)]
    public bool Streaming { get; set; }
}
