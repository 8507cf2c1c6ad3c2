namespace P2PInference.Facilities.Dht;

/// <summary>What one iterative lookup cost, for reports and the large simulations.</summary>
/// <param name="Hops">The longest chain of answered requests (a peer from our table is hop 1, one it named is hop 2, ...).</param>
/// <param name="HopsToResult">The hop at which the sought thing (provider, value, peer) first turned up; 0 when it did not.</param>
/// <param name="RequestsSent">Requests sent, answered or not.</param>
/// <param name="Responses">Requests answered with a valid reply.</param>
/// <param name="Failures">Requests that failed: no route, refused, timed out, or a garbage reply.</param>
/// <param name="PeersSeen">Distinct peers the lookup learned of, seeds included.</param>
/// <param name="Elapsed">Wall time on the DHT's clock.</param>
/// <param name="TimedOut">The overall lookup deadline ended it before it converged.</param>
public sealed record LookupStats(
    int Hops,
    int HopsToResult,
    int RequestsSent,
    int Responses,
    int Failures,
    int PeersSeen,
    TimeSpan Elapsed,
    bool TimedOut)
{
    public static LookupStats Empty { get; } = new(0, 0, 0, 0, 0, 0, TimeSpan.Zero, false);
}
