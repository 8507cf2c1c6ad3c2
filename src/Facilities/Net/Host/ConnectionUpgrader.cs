using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Noise;
using P2PInference.Facilities.Net.Plaintext;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;

namespace P2PInference.Facilities.Net.Host;

/// <summary>
/// Turns a raw transport connection into a <see cref="PeerConnection"/>:
/// multistream-select → Noise XX → multistream-select → Yamux, as every libp2p peer does over TCP.
/// With <see cref="HostOptions.SecurityProtocols"/> it may also negotiate <c>/plaintext/2.0.0</c>
/// in place of Noise (tests and simulations only).
/// </summary>
internal static class ConnectionUpgrader
{
    public const string YamuxProtocolId = "/yamux/1.0.0";
    private static readonly string[] MuxerProtocols = [YamuxProtocolId];

    /// <param name="direction">The handshake role: <see cref="ConnectionDirection.Outbound"/> initiates (multistream dialer, Noise
    /// initiator, Yamux client), <see cref="ConnectionDirection.Inbound"/> responds. A dial may respond (DCUtR's simultaneous open).</param>
    /// <param name="expectedRemote">The peer that must answer, in either role; any when null.</param>
    /// <param name="localIdentity">The key we prove; the host's (<see cref="HostOptions.Identity"/>) when null.</param>
    public static async Task<PeerConnection> UpgradeAsync(RawConnection raw, ConnectionDirection direction, PeerId? expectedRemote,
        HostOptions options, CancellationToken cancellationToken, KeyPair? localIdentity = null)
    {
        var identity = localIdentity ?? options.Identity;
        using var timeout = new CancellationTokenSource(options.UpgradeTimeout, options.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        var ct = linked.Token;
        Stream? secure = null;
        PeerId remotePeer;
        PublicKey remoteKey;
        try
        {
            var securityProtocols = options.SecurityProtocols;
            if (direction == ConnectionDirection.Outbound)
            {
                var security = await MultistreamSelect.SelectAsync(raw.Stream, securityProtocols, ct);
                if (security == PlaintextHandshake.ProtocolId)
                {
                    var session = await PlaintextHandshake.InitiateAsync(raw.Stream, identity, expectedRemote, ct);
                    (secure, remotePeer, remoteKey) = session;
                }
                else
                {
                    var noise = await NoiseHandshake.InitiateAsync(raw.Stream, identity, expectedRemote, options.RandomSource, ct);
                    (secure, remotePeer, remoteKey) = (noise, noise.RemotePeer, noise.RemotePublicKey);
                }
                await MultistreamSelect.SelectAsync(secure, MuxerProtocols, ct);
            }
            else
            {
                var security = await MultistreamSelect.HandleAsync(raw.Stream, securityProtocols, ct);
                if (security == PlaintextHandshake.ProtocolId)
                {
                    var session = await PlaintextHandshake.RespondAsync(raw.Stream, identity, ct);
                    (secure, remotePeer, remoteKey) = session;
                }
                else
                {
                    var noise = await NoiseHandshake.RespondAsync(raw.Stream, identity, options.RandomSource, ct);
                    (secure, remotePeer, remoteKey) = (noise, noise.RemotePeer, noise.RemotePublicKey);
                }
                // A dial upgraded in the responder role (DCUtR's simultaneous open) still knows whom it dialed.
                if (expectedRemote is not null && remotePeer != expectedRemote)
                    throw new NoiseException($"the remote at {raw.RemoteAddress} is {remotePeer}, not the dialed {expectedRemote}");
                await MultistreamSelect.HandleAsync(secure, MuxerProtocols, ct);
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            await DisposeQuietlyAsync(secure, raw);
            throw new TimeoutException($"connection upgrade with {raw.RemoteAddress} did not finish within {options.UpgradeTimeout}");
        }
        catch
        {
            await DisposeQuietlyAsync(secure, raw);
            throw;
        }

        // Keep-alives on the host's clock: a simulated host must not arm real-time timers.
        var yamux = new YamuxSession(secure, direction == ConnectionDirection.Outbound, options.Yamux.OnClock(options.TimeProvider));
        return new PeerConnection(yamux, identity.PeerId, remotePeer, remoteKey,
            raw.LocalAddress, raw.RemoteAddress, direction, options.TimeProvider) { IsLimited = raw.IsLimited };
    }

    /// <summary>Rejects protocol ids this upgrader cannot run, before any connection depends on them.</summary>
    public static void ValidateSecurityProtocols(IReadOnlyList<string> protocols)
    {
        ArgumentNullException.ThrowIfNull(protocols);
        if (protocols.Count == 0) throw new ArgumentException("at least one security protocol is needed", nameof(protocols));
        foreach (var protocol in protocols)
            if (protocol is not (NoiseHandshake.ProtocolId or PlaintextHandshake.ProtocolId))
                throw new ArgumentException($"unsupported security protocol {protocol}", nameof(protocols));
    }

    private static async ValueTask DisposeQuietlyAsync(Stream? secure, RawConnection raw)
    {
        try
        {
            if (secure is not null) await secure.DisposeAsync();
            await raw.DisposeAsync();
        }
        catch (IOException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
    }
}
