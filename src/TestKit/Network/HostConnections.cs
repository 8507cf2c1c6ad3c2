using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Threading;

namespace P2PInference.TestKit.Network;

/// <summary>Both ends of a new connection between two hosts, for tests of what the listener made of the dialer.</summary>
public static class HostConnections
{
    /// <summary>
    /// Dials <paramref name="listener"/> from <paramref name="dialer"/> and returns the dialer's connection and
    /// the listener's, once the listener has adopted it (and, with <paramref name="identify"/>, finished identify
    /// with the dialer). The two must not be connected yet: an existing connection would be reused and the
    /// listener would never see a new one.
    /// </summary>
    /// <param name="address">Where to dial; the listener's first advertised address when null.</param>
    public static async Task<(PeerConnection Outbound, PeerConnection Inbound)> ConnectAsync(P2PHost dialer, P2PHost listener,
        CancellationToken cancellationToken, Multiaddress? address = null, bool identify = false)
    {
        ArgumentNullException.ThrowIfNull(dialer);
        ArgumentNullException.ThrowIfNull(listener);
        var inbound = new TaskCompletionSource<PeerConnection>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnConnected(PeerConnection connection)
        {
            if (connection.RemotePeer == dialer.PeerId) inbound.TrySetResult(connection);
        }
        listener.PeerConnected += OnConnected;
        try
        {
            var outbound = await dialer.ConnectAsync(address ?? listener.AdvertisedAddresses[0], cancellationToken);
            var connection = await inbound.Task.WaitOrCancelAsync(cancellationToken);
            if (identify) await listener.IdentifyAsync(connection, cancellationToken);
            return (outbound, connection);
        }
        finally
        {
            listener.PeerConnected -= OnConnected;
        }
    }
}
