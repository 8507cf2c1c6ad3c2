using System.Buffers.Binary;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Noise;

/// <summary>
/// Remembers handshake payloads whose signature checked out: an identity key, the Noise static key it
/// signed and the signature, exactly as received. libp2p peers keep one static key per identity
/// (<see cref="NoiseLocalIdentity"/>, go-libp2p, js-libp2p), so a peer that connects again sends the
/// same three byte strings, and checking the signature again would give the same answer: an Ed25519
/// verification is about 45 µs, a tenth of a new connection's CPU on both ends together. A lookup
/// compares all bytes, so only an exact repeat of a payload that verified is spared; anything else is
/// verified as before.
/// </summary>
/// <remarks>
/// Direct-mapped and bounded: <see cref="Capacity"/> slots chosen by the static key, a newer entry
/// replacing an older one in its slot. A remote that picks static keys to collide with others' slots
/// only costs them a verification they would have done anyway. Entries are immutable and a slot is one
/// reference, so concurrent handshakes share the table without a lock. Handshakes use one table per
/// process (<see cref="Shared"/>): a simulation's nodes share it too, which changes what a handshake
/// costs, never what it decides.
/// </remarks>
internal sealed class VerifiedStaticKeys
{
    internal const int Capacity = 1024;

    private readonly Entry?[] _slots = new Entry?[Capacity];

    public static VerifiedStaticKeys Shared { get; } = new();

    /// <summary>The identity key of a payload verified before with exactly these bytes; null when it was not.</summary>
    public PublicKey? Find(ReadOnlySpan<byte> identityKey, ReadOnlySpan<byte> staticKey, ReadOnlySpan<byte> signature)
    {
        var entry = Volatile.Read(ref _slots[SlotOf(staticKey)]);
        return entry is not null
            && entry.StaticKey.AsSpan().SequenceEqual(staticKey)
            && entry.Signature.AsSpan().SequenceEqual(signature)
            && entry.IdentityKey.AsSpan().SequenceEqual(identityKey)
            ? entry.Key
            : null;
    }

    /// <summary>Records a payload whose signature verified, with the key parsed from <paramref name="identityKey"/>.</summary>
    public void Add(ReadOnlySpan<byte> identityKey, ReadOnlySpan<byte> staticKey, ReadOnlySpan<byte> signature, PublicKey key) =>
        Volatile.Write(ref _slots[SlotOf(staticKey)], new Entry(identityKey.ToArray(), staticKey.ToArray(), signature.ToArray(), key));

    // A Curve25519 public key is uniformly distributed, so its first bytes spread the slots evenly.
    private static int SlotOf(ReadOnlySpan<byte> staticKey) =>
        staticKey.Length >= sizeof(uint) ? (int)(BinaryPrimitives.ReadUInt32LittleEndian(staticKey) % Capacity) : 0;

    private sealed record Entry(byte[] IdentityKey, byte[] StaticKey, byte[] Signature, PublicKey Key);
}
