using System.Runtime.CompilerServices;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Noise;

/// <summary>
/// A local identity's Noise static key and the signed libp2p payload that binds the two, made on the
/// first handshake and reused by every later one, as go-libp2p keeps one static key per transport.
/// Noise static keys are long-lived by design (forward secrecy comes from the ephemeral keys); a key
/// per connection cost each side a scalar multiplication and an Ed25519 signature per handshake.
/// </summary>
internal sealed class NoiseLocalIdentity
{
    // Weak on the identity and on the source: an entry lives exactly as long as both. Keyed by the
    // source too, so a simulation that builds a fresh seeded source per run draws the static key in
    // every run, even when runs share a KeyPair; otherwise the second run would skip that draw and
    // every later byte would shift. In production there is one source, so one key per identity.
    private static readonly ConditionalWeakTable<KeyPair, ConditionalWeakTable<IRandomSource, NoiseLocalIdentity>> ByIdentity = new();

    private NoiseLocalIdentity(KeyPair identity, IRandomSource source)
    {
        StaticKey = Curve25519KeyPair.Generate(source);
        Payload = NoisePayload.Create(identity, StaticKey.PublicKey);
    }

    /// <summary>Shared by concurrent handshakes: agreement only reads the private key.</summary>
    public Curve25519KeyPair StaticKey { get; }

    /// <summary>The handshake payload; callers only read it.</summary>
    public byte[] Payload { get; }

    /// <summary>The last muxer list asked for and the payload offering it (the upgrader always asks for the same list).</summary>
    private Offering? _offering;

    /// <summary><see cref="Payload"/> offering <paramref name="streamMuxers"/> for early muxer negotiation; itself for none.</summary>
    public byte[] PayloadOffering(IReadOnlyList<string> streamMuxers)
    {
        if (streamMuxers.Count == 0) return Payload;
        if (Volatile.Read(ref _offering) is { } cached && ReferenceEquals(cached.Muxers, streamMuxers)) return cached.Payload;
        var payload = NoisePayload.WithStreamMuxers(Payload, streamMuxers);
        Volatile.Write(ref _offering, new Offering(streamMuxers, payload));
        return payload;
    }

    private sealed record Offering(IReadOnlyList<string> Muxers, byte[] Payload);

    public static NoiseLocalIdentity For(KeyPair identity) => For(identity, SystemRandomSource.Instance);

    /// <summary>The identity's Noise state; the first call for an (identity, source) pair draws the static key from <paramref name="source"/>.</summary>
    public static NoiseLocalIdentity For(KeyPair identity, IRandomSource source)
    {
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(source);
        var bySource = ByIdentity.GetValue(identity, static _ => new ConditionalWeakTable<IRandomSource, NoiseLocalIdentity>());
        if (bySource.TryGetValue(source, out var existing)) return existing;
        return bySource.GetValue(source, s => new NoiseLocalIdentity(identity, s));
    }
}
