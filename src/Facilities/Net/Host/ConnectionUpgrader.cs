using P2PInference.Facilities.Addressing;
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
/// The second multistream-select is skipped when both sides offered Yamux inside the Noise handshake
/// (early muxer negotiation, <see cref="HostOptions.EarlyMuxerNegotiation"/>). With <see cref="HostOptions.SecurityProtocols"/> it may also negotiate <c>/plaintext/2.0.0</c>
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
        // The handshake reads from a buffer and each side's messages of one turn leave in one write.
        var upgrade = new UpgradeStream(raw.Stream);
        Stream? secure = null;
        Stream muxed;
        PeerId remotePeer;
        PublicKey remoteKey;
        try
        {
            var securityProtocols = options.SecurityProtocols;
            if (direction == ConnectionDirection.Outbound)
            {
                if (securityProtocols is [NoiseHandshake.ProtocolId])
                {
                    // Lazy negotiation: Noise's first message follows the proposal in the same write, and the
                    // muxer's proposal, when the handshake did not choose the muxer, follows Noise's last
                    // message. The listener's answer is checked before anything it sends is read.
                    var lazy = new MultistreamLazyStream(upgrade, NoiseHandshake.ProtocolId);
                    var noise = await NoiseHandshake.RunUpgradeAsync(lazy, upgrade, identity, initiator: true, expectedRemote, options.RandomSource,
                        EarlyMuxers(options), ct);
                    (secure, remotePeer, remoteKey) = (noise, noise.RemotePeer, noise.RemotePublicKey);
                    await SelectMuxerAsync(noise, ct);
                    muxed = noise;
                }
                else
                {
                    await upgrade.ReleaseAsync(ct);
                    var security = await MultistreamSelect.SelectAsync(upgrade, securityProtocols, ct);
                    if (security == PlaintextHandshake.ProtocolId)
                    {
                        var session = await PlaintextHandshake.InitiateAsync(upgrade, identity, expectedRemote, ct);
                        (secure, remotePeer, remoteKey) = session;
                    }
                    else
                    {
                        var noise = await NoiseHandshake.RunUpgradeAsync(upgrade, upgrade, identity, initiator: true, expectedRemote, options.RandomSource,
                            EarlyMuxers(options), ct);
                        (secure, remotePeer, remoteKey) = (noise, noise.RemotePeer, noise.RemotePublicKey);
                    }
                    if (secure is NoiseSecureStream noiseStream) await SelectMuxerAsync(noiseStream, ct);
                    else await MultistreamSelect.SelectAsync(secure, MuxerProtocols, ct);
                    muxed = secure;
                }
            }
            else
            {
                var security = await MultistreamSelect.HandleAsync(upgrade, IsSecurityProtocol(securityProtocols), securityProtocols,
                    () => upgrade.DataAvailable, ct);
                Func<bool> dataAvailable;
                if (security == PlaintextHandshake.ProtocolId)
                {
                    await upgrade.ReleaseAsync(ct);
                    var session = await PlaintextHandshake.RespondAsync(upgrade, identity, ct);
                    (secure, remotePeer, remoteKey) = session;
                    dataAvailable = () => upgrade.DataAvailable;
                }
                else
                {
                    var noise = await NoiseHandshake.RunUpgradeAsync(upgrade, upgrade, identity, initiator: false, expectedRemote: null, options.RandomSource,
                        EarlyMuxers(options), ct);
                    (secure, remotePeer, remoteKey) = (noise, noise.RemotePeer, noise.RemotePublicKey);
                    dataAvailable = () => noise.HasBufferedData;
                }
                // A dial upgraded in the responder role (DCUtR's simultaneous open) still knows whom it dialed.
                if (expectedRemote is not null && remotePeer != expectedRemote)
                    throw new NoiseException($"the remote at {raw.RemoteAddress} is {remotePeer}, not the dialed {expectedRemote}");
                // A muxer chosen in the handshake needs no negotiation: the connection is up once the dialer's last message is in.
                if (secure is not NoiseSecureStream { EarlyMuxer: not null })
                    await MultistreamSelect.HandleAsync(secure, IsYamux, MuxerProtocols, dataAvailable, ct);
                muxed = secure;
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            await DisposeQuietlyAsync(secure, upgrade);
            throw new TimeoutException($"connection upgrade with {raw.RemoteAddress} did not finish within {options.UpgradeTimeout}");
        }
        catch
        {
            // A refusal ("na") may still be held back behind a read that then failed: the peer should learn why.
            await SendHeldQuietlyAsync(upgrade);
            await DisposeQuietlyAsync(secure, upgrade);
            throw;
        }

        // A plaintext session would use the upgrade stream for its whole life; once it has nothing
        // buffered, the muxer may as well use the transport itself, one object and layer less per connection.
        if (ReferenceEquals(muxed, upgrade) && upgrade.IsPassThrough) muxed = upgrade.Detach(out _, out _);
        // Keep-alives on the host's clock: a simulated host must not arm real-time timers.
        var yamux = new YamuxSession(muxed, direction == ConnectionDirection.Outbound, options.Yamux.OnClock(options.TimeProvider));
        // The dialer's instance when it is the same peer (the handshake checked): it is usually the one the
        // peer store and routing table hold, and the handshake's copy would be kept per connection.
        if (expectedRemote is not null && expectedRemote.Equals(remotePeer)) remotePeer = expectedRemote;
        var addressHidesPeer = direction == ConnectionDirection.Inbound && options.InboundPeersArePublic;
        return new PeerConnection(yamux, identity.PeerId, remotePeer, remoteKey,
            raw.LocalAddress, raw.RemoteAddress, addressHidesPeer ? AddressScope.Public : AddressScopes.Of(raw.RemoteAddress),
            direction, options.TimeProvider, addressHidesPeer) { IsLimited = raw.IsLimited };
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

    private static readonly Func<string, bool> IsYamux = protocol => protocol == YamuxProtocolId;

    private static IReadOnlyList<string> EarlyMuxers(HostOptions options) => options.EarlyMuxerNegotiation ? MuxerProtocols : [];

    /// <summary>
    /// The dialer's muxer step after Noise. Chosen in the handshake: the held last handshake message
    /// goes out now, alone, since the listener's upgrade waits for it and this side may write nothing
    /// for a while. Otherwise multistream-select, not lazily: a dialer that closes at once would leave
    /// the listener writing its first muxer frames into a closed connection.
    /// </summary>
    private static ValueTask SelectMuxerAsync(NoiseSecureStream noise, CancellationToken ct) =>
        noise.EarlyMuxer is not null ? noise.SendHandshakeRestAsync(ct) : new ValueTask(MultistreamSelect.SelectAsync(noise, MuxerProtocols, ct));

    private static Func<string, bool> IsSecurityProtocol(IReadOnlyList<string> protocols) =>
        protocols is [var only] ? protocol => protocol == only : protocol => protocols.Contains(protocol, StringComparer.Ordinal);

    private static async ValueTask SendHeldQuietlyAsync(UpgradeStream upgrade)
    {
        try
        {
            await upgrade.SendHeldAsync(CancellationToken.None);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or NotSupportedException)
        {
        }
    }

    /// <summary>Disposes the secure channel, or the upgrade stream (and with it the transport) when there is none yet.</summary>
    private static async ValueTask DisposeQuietlyAsync(Stream? secure, UpgradeStream upgrade)
    {
        try
        {
            if (secure is not null) await secure.DisposeAsync();
            await upgrade.DisposeAsync();
        }
        catch (IOException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
    }
}
