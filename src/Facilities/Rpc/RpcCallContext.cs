using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Rpc;

/// <summary>What a handler knows about the call it serves.</summary>
public sealed class RpcCallContext
{
    private readonly TimeProvider _time;

    public RpcCallContext(PeerId remotePeer, string method, DateTimeOffset? deadline, string requestId, string traceId,
        IReadOnlyDictionary<string, string> metadata, TimeProvider time, CancellationToken cancellationToken)
    {
        RemotePeer = remotePeer;
        Method = method;
        Deadline = deadline;
        RequestId = requestId;
        TraceId = traceId;
        Metadata = metadata;
        _time = time;
        CancellationToken = cancellationToken;
    }

    /// <summary>The authenticated caller (its key was proven by the Noise handshake).</summary>
    public PeerId RemotePeer { get; }

    /// <summary>
    /// Where the caller's connection comes from (the transport's remote address; behind a NAT, the
    /// NAT's), or null where the carrier does not know it. Unauthenticated: for limits, not identity.
    /// </summary>
    public Multiaddress? RemoteAddress { get; init; }

    /// <summary>
    /// What limits per address count the caller under (<see cref="Net.Host.PeerConnection.Origin"/>: its IPv4
    /// address or IPv6 /64), or null where the address says nothing about who the caller is: loopback, an inbound
    /// peer behind a declared proxy (<see cref="Net.Host.HostOptions.InboundPeersArePublic"/>), whose one address
    /// would make such a limit one bucket for everyone, or a carrier that does not know it.
    /// </summary>
    public string? RemoteOrigin { get; init; }

    public string Method { get; }

    /// <summary>The caller's deadline on this node's clock (computed from the remaining time sent), or null.</summary>
    public DateTimeOffset? Deadline { get; }

    public string RequestId { get; }

    public string TraceId { get; }

    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Fires when the caller cancels (closes or resets the stream), the deadline passes, or the server stops.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>Time left until <see cref="Deadline"/> (never negative), or null when the call has none.</summary>
    public TimeSpan? RemainingTime => Deadline is { } d ? TimeSpanMax(d - _time.GetUtcNow(), TimeSpan.Zero) : null;

    private static TimeSpan TimeSpanMax(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
