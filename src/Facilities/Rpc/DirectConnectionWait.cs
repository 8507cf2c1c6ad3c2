using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Rpc;

/// <summary>
/// Keeps bulk calls (<see cref="RpcOptions.BulkMethods"/>) off limited connections for a while: when
/// the connection to the callee is limited (relayed, with the relay's time and byte caps), the call
/// waits up to <see cref="RpcOptions.DirectConnectionWait"/> for a direct one — which hole punching
/// (DCUtR) or the callee dialling us may bring — woken by <see cref="P2PHost.PeerConnected"/>, not by
/// polling. Past the bound it goes over the relay anyway: a call that fits the relay's limits
/// succeeds, one that does not is reset at the limit, which the caller sees as a typed
/// <see cref="RpcStatusCode.Unavailable"/> and a gateway fails over on. Waiting longer would only
/// delay every call to a peer that can never be reached directly (two symmetric NATs).
/// </summary>
internal static class DirectConnectionWait
{
    /// <returns>Whether the call may go direct: a connection that is not limited is there.</returns>
    public static async Task<bool> WaitAsync(P2PHost host, PeerId peer, TimeSpan bound, ILogger logger, CancellationToken cancellationToken)
    {
        var connection = await host.ConnectAsync(peer, cancellationToken);
        if (!connection.IsLimited) return true;
        var direct = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnConnected(PeerConnection c)
        {
            if (c.RemotePeer == peer && !c.IsLimited) direct.TrySetResult();
        }
        host.PeerConnected += OnConnected;
        try
        {
            // Looked at again once subscribed: a direct connection that came in between is not missed. The
            // host hands new streams to a direct connection before a relayed one, so its choice says it.
            if (host.GetConnection(peer) is { IsLimited: false }) return true;
            if (bound <= TimeSpan.Zero) return false;
            using var timeout = new CancellationTokenSource(bound, host.TimeProvider);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            try
            {
                await direct.Task.WaitOrCancelAsync(linked.Token);
                logger.LogDebug("a direct connection to {Peer} came up; the bulk call goes over it", peer);
                return true;
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                logger.LogInformation("no direct connection to {Peer} within {Bound}; the bulk call goes over the relay, within its limits", peer, bound);
                return false;
            }
        }
        finally
        {
            host.PeerConnected -= OnConnected;
        }
    }
}
