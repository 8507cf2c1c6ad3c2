namespace P2PInference.TestKit.Rpc;

/// <summary>What a directed link of an <see cref="InMemoryRpcNetwork"/> does to the messages crossing it.</summary>
public enum RpcLinkFault
{
    /// <summary>Messages arrive (after the link's latency).</summary>
    None,

    /// <summary>The link is broken: a call that needs it fails at once with Unavailable, as a refused or reset connection would.</summary>
    Fail,

    /// <summary>Messages vanish: a call that needs the link stalls until its deadline or cancellation, as on a partition.</summary>
    Drop,
}
