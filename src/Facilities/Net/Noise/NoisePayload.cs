using Google.Protobuf;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Identity.Proto;
using P2PInference.Facilities.Net.Noise.Proto;
using PublicKey = P2PInference.Facilities.Identity.PublicKey;

namespace P2PInference.Facilities.Net.Noise;

/// <summary>
/// The libp2p handshake payload: the identity key and its Ed25519 signature over
/// "noise-libp2p-static-key:" ‖ the Noise static key, binding the peer's identity to this handshake.
/// </summary>
internal static class NoisePayload
{
    private const int MaxSignatureLength = 512;
    /// <summary>Real peers list one to three muxers; a longer list is not a muxer list.</summary>
    internal const int MaxStreamMuxers = 16;
    private static readonly byte[] SignaturePrefix = System.Text.Encoding.UTF8.GetBytes("noise-libp2p-static-key:");

    public static byte[] Create(KeyPair identity, ReadOnlySpan<byte> noiseStaticPublicKey) =>
        CreateSigned(identity.PublicKey, identity, noiseStaticPublicKey);

    /// <summary>
    /// Claims <paramref name="claimedKey"/> but signs with <paramref name="signer"/>: equal in every
    /// honest use; differing only where tests forge a payload.
    /// </summary>
    internal static byte[] CreateSigned(PublicKey claimedKey, KeyPair signer, ReadOnlySpan<byte> noiseStaticPublicKey) =>
        new NoiseHandshakePayload
        {
            IdentityKey = ByteString.CopyFrom(claimedKey.ToProtobuf()),
            IdentitySig = ByteString.CopyFrom(signer.Sign(SignedBytes(noiseStaticPublicKey))),
        }.ToByteArray();

    /// <summary>
    /// <paramref name="payload"/> offering <paramref name="streamMuxers"/> for early muxer negotiation
    /// (NoiseExtensions.stream_muxers). The signature covers only the static key, so the extensions
    /// are appended to a signed payload as one more protobuf field.
    /// </summary>
    internal static byte[] WithStreamMuxers(byte[] payload, IReadOnlyList<string> streamMuxers)
    {
        if (streamMuxers.Count == 0) return payload;
        var extensions = new NoiseExtensions();
        extensions.StreamMuxers.AddRange(streamMuxers);
        var appended = new NoiseHandshakePayload { Extensions = extensions }.ToByteArray();
        return [.. payload, .. appended];
    }

    /// <summary>Checks the remote's payload against the static key it sent; returns its identity key.</summary>
    /// <exception cref="NoiseException">Malformed, oversized, unsupported key type, or a bad signature.</exception>
    public static PublicKey Verify(ReadOnlySpan<byte> payload, ReadOnlySpan<byte> remoteNoiseStaticKey) =>
        Verify(payload, remoteNoiseStaticKey, out _);

    /// <summary>As the other overload, and the stream muxers the payload offers for early negotiation (empty when none).</summary>
    /// <exception cref="NoiseException">As the other overload, or the muxer list is longer than any real peer sends.</exception>
    public static PublicKey Verify(ReadOnlySpan<byte> payload, ReadOnlySpan<byte> remoteNoiseStaticKey, out IReadOnlyList<string> streamMuxers) =>
        Verify(payload, remoteNoiseStaticKey, VerifiedStaticKeys.Shared, out streamMuxers);

    /// <summary>As the other overload, remembering what verified in <paramref name="verified"/> (tests pass a table of their own).</summary>
    internal static PublicKey Verify(ReadOnlySpan<byte> payload, ReadOnlySpan<byte> remoteNoiseStaticKey, VerifiedStaticKeys verified, out IReadOnlyList<string> streamMuxers)
    {
        NoiseHandshakePayload message;
        try
        {
            message = NoiseHandshakePayload.Parser.ParseFrom(payload);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new NoiseException("malformed handshake payload: " + e.Message, e);
        }
        if (!message.HasIdentityKey || message.IdentityKey.IsEmpty)
            throw new NoiseException("handshake payload lacks the identity key");
        if (!message.HasIdentitySig || message.IdentitySig.IsEmpty)
            throw new NoiseException("handshake payload lacks the identity signature");
        if (message.IdentityKey.Length > PublicKey.MaxEncodedLength)
            throw new NoiseException($"identity key of {message.IdentityKey.Length} bytes exceeds {PublicKey.MaxEncodedLength}");
        if (message.IdentitySig.Length > MaxSignatureLength)
            throw new NoiseException($"identity signature of {message.IdentitySig.Length} bytes exceeds {MaxSignatureLength}");

        if (verified.Find(message.IdentityKey.Span, remoteNoiseStaticKey, message.IdentitySig.Span) is not { } key)
        {
            try
            {
                key = PublicKey.FromProtobuf(message.IdentityKey.Span);
            }
            catch (FormatException e)
            {
                throw new NoiseException("malformed identity key: " + e.Message, e);
            }
            if (key.Type != KeyType.Ed25519)
                throw new NoiseException($"identity key type {key.Type} is not supported");
            if (!key.Verify(SignedBytes(remoteNoiseStaticKey), message.IdentitySig.Span))
                throw new NoiseException("identity signature does not match the Noise static key");
            verified.Add(message.IdentityKey.Span, remoteNoiseStaticKey, message.IdentitySig.Span, key);
        }
        streamMuxers = [];
        if (message.Extensions is { StreamMuxers.Count: > 0 } extensions)
        {
            if (extensions.StreamMuxers.Count > MaxStreamMuxers)
                throw new NoiseException($"handshake payload offers {extensions.StreamMuxers.Count} stream muxers, more than {MaxStreamMuxers}");
            streamMuxers = extensions.StreamMuxers;
        }
        return key;
    }

    private static byte[] SignedBytes(ReadOnlySpan<byte> noiseStaticPublicKey)
    {
        var data = new byte[SignaturePrefix.Length + noiseStaticPublicKey.Length];
        SignaturePrefix.CopyTo(data, 0);
        noiseStaticPublicKey.CopyTo(data.AsSpan(SignaturePrefix.Length));
        return data;
    }
}
