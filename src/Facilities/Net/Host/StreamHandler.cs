using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Yamux;

namespace P2PInference.Facilities.Net.Host;

/// <summary>An inbound stream after protocol negotiation, handed to the protocol's handler.</summary>
public sealed class StreamContext(YamuxStream stream, PeerConnection connection, string protocol)
{
    public YamuxStream Stream { get; } = stream;
    public PeerConnection Connection { get; } = connection;
    public string Protocol { get; } = protocol;
    public PeerId RemotePeer => Connection.RemotePeer;
}

/// <summary>
/// Serves one inbound stream. The token fires when the host stops or the connection dies; the
/// host disposes the stream after the handler returns and resets it if the handler throws.
/// </summary>
public delegate Task StreamHandler(StreamContext context, CancellationToken cancellationToken);
