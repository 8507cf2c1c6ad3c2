using System.Buffers;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Facilities.Net.Noise;

/// <summary>
/// The libp2p Noise secure channel (<c>/noise</c>): an XX handshake over an insecure stream that
/// authenticates both peers' identity keys, then an encrypted <see cref="NoiseSecureStream"/>.
/// </summary>
/// <remarks>
/// On success the returned stream owns <c>insecure</c>. On any failure, cancellation included,
/// <c>insecure</c> is disposed: a half-done handshake leaves nothing usable on it.
/// </remarks>
public static class NoiseHandshake
{
    public const string ProtocolId = "/noise";

    /// <summary>Runs the handshake as the dialer.</summary>
    /// <param name="expectedRemote">The peer dialled, when known; any other peer fails the handshake.</param>
    /// <exception cref="NoiseException">The remote broke the protocol or is not <paramref name="expectedRemote"/>.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired first.</exception>
    public static Task<NoiseSecureStream> InitiateAsync(Stream insecure, KeyPair localKey, PeerId? expectedRemote, CancellationToken cancellationToken) =>
        InitiateAsync(insecure, localKey, expectedRemote, SystemRandomSource.Instance, cancellationToken);

    /// <summary>Runs the handshake as the dialer, with keys from <paramref name="randomSource"/> (a seeded one only in simulations).</summary>
    /// <inheritdoc cref="InitiateAsync(Stream, KeyPair, PeerId?, CancellationToken)"/>
    public static Task<NoiseSecureStream> InitiateAsync(Stream insecure, KeyPair localKey, PeerId? expectedRemote, IRandomSource randomSource,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(insecure);
        ArgumentNullException.ThrowIfNull(localKey);
        ArgumentNullException.ThrowIfNull(randomSource);
        return RunAsync(insecure, localKey, initiator: true, expectedRemote, randomSource, cancellationToken);
    }

    /// <summary>Runs the handshake as the listener; the remote may be any peer.</summary>
    /// <exception cref="NoiseException">The remote broke the protocol.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired first.</exception>
    public static Task<NoiseSecureStream> RespondAsync(Stream insecure, KeyPair localKey, CancellationToken cancellationToken) =>
        RespondAsync(insecure, localKey, SystemRandomSource.Instance, cancellationToken);

    /// <summary>Runs the handshake as the listener, with keys from <paramref name="randomSource"/> (a seeded one only in simulations).</summary>
    /// <inheritdoc cref="RespondAsync(Stream, KeyPair, CancellationToken)"/>
    public static Task<NoiseSecureStream> RespondAsync(Stream insecure, KeyPair localKey, IRandomSource randomSource, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(insecure);
        ArgumentNullException.ThrowIfNull(localKey);
        ArgumentNullException.ThrowIfNull(randomSource);
        return RunAsync(insecure, localKey, initiator: false, expectedRemote: null, randomSource, cancellationToken);
    }

    /// <summary>
    /// The handshake of a connection upgrade, on <paramref name="insecure"/> (which runs over
    /// <paramref name="upgrade"/>, or is it): the secure channel then takes the transport stream
    /// back from <paramref name="upgrade"/>, with the bytes read past the handshake and, on the
    /// initiator, the last message still held back, so it leaves with the caller's first write.
    /// </summary>
    /// <param name="streamMuxers">Muxers offered for early negotiation (libp2p's inlined muxer negotiation), in
    /// preference order; none to leave the muxer to multistream-select. The result's <see cref="NoiseSecureStream.EarlyMuxer"/>
    /// is the muxer chosen, or null when the remote offered none.</param>
    internal static Task<NoiseSecureStream> RunUpgradeAsync(Stream insecure, UpgradeStream upgrade, KeyPair localKey, bool initiator,
        PeerId? expectedRemote, IRandomSource randomSource, IReadOnlyList<string> streamMuxers, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(upgrade);
        ArgumentNullException.ThrowIfNull(streamMuxers);
        return RunAsync(insecure, localKey, initiator, expectedRemote, randomSource, cancellationToken, upgrade, streamMuxers);
    }

    private static async Task<NoiseSecureStream> RunAsync(Stream insecure, KeyPair localKey, bool initiator, PeerId? expectedRemote,
        IRandomSource randomSource, CancellationToken cancellationToken, UpgradeStream? upgrade = null, IReadOnlyList<string>? streamMuxers = null)
    {
        var buffer = new NoiseFraming.PooledBuffer(InitialBufferSize);
        var local = NoiseLocalIdentity.For(localKey, randomSource);
        var muxers = new MuxerChoice(streamMuxers ?? [], initiator);
        using var state = new HandshakeState(initiator, ReadOnlySpan<byte>.Empty, local.StaticKey, randomSource: randomSource);
        try
        {
            // Not every Stream honours a token mid-read; disposing it ends the read for sure.
            await using (cancellationToken.Register(static s => ((Stream)s!).Dispose(), insecure))
            {
                PublicKey remoteKey;
                try
                {
                    var payload = local.PayloadOffering(muxers.Local);
                    remoteKey = initiator
                        ? await InitiatorStepsAsync(insecure, payload, expectedRemote, state, buffer, muxers, cancellationToken)
                        : await ResponderStepsAsync(insecure, payload, state, buffer, muxers, cancellationToken);
                }
                catch (Exception e) when (e is not OperationCanceledException && cancellationToken.IsCancellationRequested)
                {
                    throw new OperationCanceledException("the Noise handshake was cancelled", e, cancellationToken);
                }
                cancellationToken.ThrowIfCancellationRequested();
                var (send, receive) = state.Split();
                if (upgrade is null) return new NoiseSecureStream(insecure, send, receive, remoteKey);
                var transport = upgrade.Detach(out var received, out var unsent);
                return new NoiseSecureStream(transport, send, receive, remoteKey, received, unsent) { EarlyMuxer = muxers.Chosen };
            }
        }
        catch
        {
            await insecure.DisposeAsync();
            throw;
        }
        finally
        {
            buffer.Return();
        }
    }

    /// <summary>Room for a handshake message of the usual size (an identity payload is about 100–200 bytes).</summary>
    private const int InitialBufferSize = 1024;

    private static async Task<PublicKey> InitiatorStepsAsync(Stream insecure, byte[] localPayload, PeerId? expectedRemote, HandshakeState state, NoiseFraming.PooledBuffer buffer,
        MuxerChoice muxers, CancellationToken cancellationToken)
    {
        // -> e (no payload: nothing is secret yet)
        await WriteMessageAsync(insecure, state, ReadOnlySpan<byte>.Empty, buffer, cancellationToken);

        // <- e, ee, s, es + the responder's signed identity (and the muxers it offers)
        var payload = await ReadMessageAsync(insecure, state, buffer, cancellationToken);
        var remoteKey = NoisePayload.Verify(payload, state.RemoteStaticPublicKey!, out var remoteMuxers);
        // Checked before message 3 so our identity is never revealed to a peer we did not mean to reach.
        if (expectedRemote is not null && !expectedRemote.Matches(remoteKey))
            throw new NoiseException($"remote is {remoteKey.ToPeerId()}, not the expected {expectedRemote}");
        muxers.Choose(remoteMuxers);

        // -> s, se + our signed identity
        await WriteMessageAsync(insecure, state, localPayload, buffer, cancellationToken);
        return remoteKey;
    }

    private static async Task<PublicKey> ResponderStepsAsync(Stream insecure, byte[] localPayload, HandshakeState state, NoiseFraming.PooledBuffer buffer,
        MuxerChoice muxers, CancellationToken cancellationToken)
    {
        // -> e (any cleartext payload is mixed into the transcript and otherwise ignored)
        await ReadMessageAsync(insecure, state, buffer, cancellationToken);

        // <- e, ee, s, es + our signed identity
        await WriteMessageAsync(insecure, state, localPayload, buffer, cancellationToken);

        // -> s, se + the initiator's signed identity (and the muxers it offers)
        var payload = await ReadMessageAsync(insecure, state, buffer, cancellationToken);
        var remoteKey = NoisePayload.Verify(payload, state.RemoteStaticPublicKey!, out var remoteMuxers);
        muxers.Choose(remoteMuxers);
        return remoteKey;
    }

    /// <summary>
    /// Early muxer negotiation (libp2p specs, connections/inlined-muxer-negotiation.md): each side offers
    /// its muxers in its payload (the responder in message 2, the initiator in message 3), and the
    /// muxer is the first of the initiator's list that the responder supports. A side that offers
    /// nothing, or a remote that offers nothing (an older peer, or one that turned it off), leaves the
    /// muxer to multistream-select; so does js-libp2p, which decides on the remote's list alone, the
    /// same answer whenever both lists hold one muxer. Both lists without a common muxer fail the
    /// handshake, as the spec requires.
    /// </summary>
    private sealed class MuxerChoice(IReadOnlyList<string> local, bool initiator)
    {
        public IReadOnlyList<string> Local { get; } = local;

        /// <summary>Null until chosen, and when the muxer is left to multistream-select.</summary>
        public string? Chosen { get; private set; }

        public void Choose(IReadOnlyList<string> remote)
        {
            if (Local.Count == 0 || remote.Count == 0) return;
            var (preferred, other) = initiator ? (Local, remote) : (remote, Local);
            foreach (var muxer in preferred)
            {
                foreach (var candidate in other)
                {
                    if (string.Equals(muxer, candidate, StringComparison.Ordinal))
                    {
                        Chosen = muxer;
                        return;
                    }
                }
            }
            throw new NoiseException($"early muxer negotiation found no common muxer: we offer {string.Join(", ", Local)}, the remote {string.Join(", ", remote)}");
        }
    }

    private static ValueTask WriteMessageAsync(Stream insecure, HandshakeState state, ReadOnlySpan<byte> payload, NoiseFraming.PooledBuffer buffer, CancellationToken cancellationToken)
    {
        buffer.Ensure(NoiseFraming.HeaderSize + state.MessageLength(payload.Length));
        var length = state.WriteMessage(payload, buffer.Array.AsSpan(NoiseFraming.HeaderSize));
        return NoiseFraming.WriteFrameAsync(insecure, buffer.Array, length, cancellationToken);
    }

    private static async ValueTask<byte[]> ReadMessageAsync(Stream insecure, HandshakeState state, NoiseFraming.PooledBuffer buffer, CancellationToken cancellationToken)
    {
        var length = await NoiseFraming.ReadFrameAsync(insecure, buffer, cancellationToken);
        return state.ReadMessage(buffer.Array.AsSpan(0, length));
    }
}
