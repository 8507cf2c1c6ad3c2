using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Yamux;

namespace P2PInference.Facilities.Net.Host;

/// <summary>An upgraded connection: authenticated (Noise) and multiplexed (Yamux) to a known peer.</summary>
public sealed class PeerConnection : IAsyncDisposable
{
    private readonly TimeProvider _time;
    private long _lastActiveTimestamp;
    private int _draining;

    internal PeerConnection(YamuxSession session, PeerId localPeer, PeerId remotePeer, PublicKey remotePublicKey,
        Multiaddress localAddress, Multiaddress remoteAddress, ConnectionDirection direction, TimeProvider time)
    {
        Session = session;
        LocalPeer = localPeer;
        RemotePeer = remotePeer;
        RemotePublicKey = remotePublicKey;
        LocalAddress = localAddress;
        RemoteAddress = remoteAddress;
        Direction = direction;
        _time = time;
        _lastActiveTimestamp = time.GetTimestamp();
    }

    public YamuxSession Session { get; }
    public PeerId LocalPeer { get; }
    public PeerId RemotePeer { get; }
    public PublicKey RemotePublicKey { get; }
    public Multiaddress LocalAddress { get; }
    public Multiaddress RemoteAddress { get; }
    public ConnectionDirection Direction { get; }
    public int StreamCount => Session.StreamCount;
    public bool IsClosed => Session.IsClosed;
    public Task Completion => Session.Completion;

    /// <summary>The peer that dialed this connection; used to break ties between duplicate connections.</summary>
    internal PeerId Dialer => Direction == ConnectionDirection.Outbound ? LocalPeer : RemotePeer;

    /// <summary>True once the host decided to retire this connection (a duplicate); it closes when idle.</summary>
    internal bool IsDraining => Volatile.Read(ref _draining) != 0;

    internal bool MarkDraining() => Interlocked.Exchange(ref _draining, 1) == 0;

    internal TimeSpan IdleFor => StreamCount > 0 ? TimeSpan.Zero : _time.GetElapsedTime(Volatile.Read(ref _lastActiveTimestamp));

    internal void Touch() => Volatile.Write(ref _lastActiveTimestamp, _time.GetTimestamp());

    /// <summary>Opens a stream and negotiates the first of <paramref name="protocols"/> the remote supports.</summary>
    /// <exception cref="MultistreamException">The remote supports none of them (the stream is reset).</exception>
    public async Task<(YamuxStream Stream, string Protocol)> OpenStreamAsync(IReadOnlyList<string> protocols, CancellationToken cancellationToken)
    {
        Touch();
        var stream = await Session.OpenStreamAsync(cancellationToken);
        try
        {
            var protocol = await MultistreamSelect.SelectAsync(stream, protocols, cancellationToken);
            return (stream, protocol);
        }
        catch
        {
            stream.Reset();
            throw;
        }
    }

    public override string ToString() => $"{Direction} {RemotePeer} via {RemoteAddress}";

    public ValueTask DisposeAsync() => Session.DisposeAsync();
}
