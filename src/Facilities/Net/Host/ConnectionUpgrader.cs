using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Noise;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;

namespace P2PInference.Facilities.Net.Host;

/// <summary>
/// Turns a raw transport connection into a <see cref="PeerConnection"/>:
/// multistream-select → Noise XX → multistream-select → Yamux, as every libp2p peer does over TCP.
/// </summary>
internal static class ConnectionUpgrader
{
    public const string YamuxProtocolId = "/yamux/1.0.0";
    private static readonly string[] SecurityProtocols = [NoiseHandshake.ProtocolId];
    private static readonly string[] MuxerProtocols = [YamuxProtocolId];

    public static async Task<PeerConnection> UpgradeAsync(RawConnection raw, ConnectionDirection direction, PeerId? expectedRemote,
        HostOptions options, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(options.UpgradeTimeout, options.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        var ct = linked.Token;
        NoiseSecureStream? secure = null;
        try
        {
            if (direction == ConnectionDirection.Outbound)
            {
                await MultistreamSelect.SelectAsync(raw.Stream, SecurityProtocols, ct).ConfigureAwait(false);
                secure = await NoiseHandshake.InitiateAsync(raw.Stream, options.Identity, expectedRemote, ct).ConfigureAwait(false);
                await MultistreamSelect.SelectAsync(secure, MuxerProtocols, ct).ConfigureAwait(false);
            }
            else
            {
                await MultistreamSelect.HandleAsync(raw.Stream, SecurityProtocols, ct).ConfigureAwait(false);
                secure = await NoiseHandshake.RespondAsync(raw.Stream, options.Identity, ct).ConfigureAwait(false);
                await MultistreamSelect.HandleAsync(secure, MuxerProtocols, ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            await DisposeQuietlyAsync(secure, raw).ConfigureAwait(false);
            throw new TimeoutException($"connection upgrade with {raw.RemoteAddress} did not finish within {options.UpgradeTimeout}");
        }
        catch
        {
            await DisposeQuietlyAsync(secure, raw).ConfigureAwait(false);
            throw;
        }

        var session = new YamuxSession(secure, direction == ConnectionDirection.Outbound, options.Yamux);
        return new PeerConnection(session, options.Identity.PeerId, secure.RemotePeer, secure.RemotePublicKey,
            raw.LocalAddress, raw.RemoteAddress, direction, options.TimeProvider);
    }

    private static async ValueTask DisposeQuietlyAsync(Stream? secure, RawConnection raw)
    {
        try
        {
            if (secure is not null) await secure.DisposeAsync().ConfigureAwait(false);
            await raw.DisposeAsync().ConfigureAwait(false);
        }
        catch (IOException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
    }
}
