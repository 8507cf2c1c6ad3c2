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
    // Weak on the identity: an entry lives exactly as long as the KeyPair it was made for.
    private static readonly ConditionalWeakTable<KeyPair, NoiseLocalIdentity> ByIdentity = new();

    private NoiseLocalIdentity(KeyPair identity, IRandomSource source)
    {
        StaticKey = Curve25519KeyPair.Generate(source);
        Payload = NoisePayload.Create(identity, StaticKey.PublicKey);
    }

    /// <summary>Shared by concurrent handshakes: agreement only reads the private key.</summary>
    public Curve25519KeyPair StaticKey { get; }

    /// <summary>The handshake payload; callers only read it.</summary>
    public byte[] Payload { get; }

    public static NoiseLocalIdentity For(KeyPair identity) => For(identity, SystemRandomSource.Instance);

    /// <summary>
    /// The identity's Noise state; <paramref name="source"/> makes the static key on the first call
    /// only. A simulation gives each node its own KeyPair, so that first draw is from the node's source.
    /// </summary>
    public static NoiseLocalIdentity For(KeyPair identity, IRandomSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (ByIdentity.TryGetValue(identity, out var existing)) return existing;
        return ByIdentity.GetValue(identity, key => new NoiseLocalIdentity(key, source));
    }
}
