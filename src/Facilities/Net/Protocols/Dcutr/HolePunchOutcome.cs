using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;

namespace P2PInference.Facilities.Net.Protocols.Dcutr;

/// <summary>
/// How one hole punch with <paramref name="Peer"/> ended: <paramref name="Connection"/> is the direct
/// connection now open to it (ours or one the peer made), or null and <paramref name="Reason"/> says
/// why the peers stay relayed.
/// </summary>
/// <param name="Unilateral">The direct connection came from dialing the peer's advertised addresses, without the exchange.</param>
/// <param name="Attempts">CONNECT/SYNC rounds run.</param>
public sealed record HolePunchOutcome(PeerId Peer, PeerConnection? Connection, string? Reason, bool Unilateral, int Attempts)
{
    public bool IsDirect => Connection is not null;

    /// <summary>
    /// What stopped the exchange, when something did: a <see cref="DcutrException"/>,
    /// <see cref="Encoding.MalformedMessageException"/> or <see cref="Encoding.MessageTooLargeException"/>
    /// for a bad message, an <see cref="EndOfStreamException"/> or other <see cref="IOException"/> for a
    /// stream or connection that broke, a <see cref="TimeoutException"/> for a peer that went quiet.
    /// Null when the exchange ran its course (direct, or every attempt's dials failed).
    /// </summary>
    public Exception? Error { get; init; }

    /// <summary>The direct connection's remote address, when there is one.</summary>
    public Multiaddress? Address => Connection?.RemoteAddress;

    public override string ToString() => IsDirect ? $"direct with {Peer} at {Address}" : $"still relayed with {Peer}: {Reason}";
}
