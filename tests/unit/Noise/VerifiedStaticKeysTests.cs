using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Noise;

namespace P2PInference.Tests.Unit.Noise;

/// <summary>A reconnecting peer's payload is not verified twice, and nothing but an exact repeat of a verified payload skips verification.</summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class VerifiedStaticKeysTests
{
    private static readonly KeyPair Bob = KeyPair.Generate();
    private static readonly KeyPair Mallory = KeyPair.Generate();

    [Test]
    public void Verify_APayloadThatVerified_IsRemembered_AndAcceptedAgainWithTheSameKey()
    {
        var table = new VerifiedStaticKeys();
        var bob = NoiseLocalIdentity.For(Bob);

        var first = NoisePayload.Verify(bob.Payload, bob.StaticKey.PublicKey, table, out _);
        var again = NoisePayload.Verify(bob.Payload, bob.StaticKey.PublicKey, table, out _);

        Assert.That(first, Is.EqualTo(Bob.PublicKey));
        Assert.That(again, Is.EqualTo(Bob.PublicKey));
        Assert.That(table.Find(Bob.PublicKey.ToProtobuf(), bob.StaticKey.PublicKey, SignatureOf(bob.Payload)), Is.EqualTo(Bob.PublicKey));
    }

    [Test]
    public void Verify_AForgedSignatureForARememberedIdentityAndStaticKey_IsStillRejected()
    {
        var table = new VerifiedStaticKeys();
        var bob = NoiseLocalIdentity.For(Bob);
        NoisePayload.Verify(bob.Payload, bob.StaticKey.PublicKey, table, out _);

        var forged = NoisePayload.CreateSigned(Bob.PublicKey, Mallory, bob.StaticKey.PublicKey);

        Assert.Throws<NoiseException>(() => NoisePayload.Verify(forged, bob.StaticKey.PublicKey, table, out _));
    }

    [Test]
    public void Verify_ARememberedPayload_PresentedWithAnotherStaticKey_IsStillRejected()
    {
        var table = new VerifiedStaticKeys();
        var bob = NoiseLocalIdentity.For(Bob);
        NoisePayload.Verify(bob.Payload, bob.StaticKey.PublicKey, table, out _);

        var malloryStatic = Curve25519KeyPair.Generate().PublicKey;

        Assert.Throws<NoiseException>(() => NoisePayload.Verify(bob.Payload, malloryStatic, table, out _));
    }

    [Test]
    public void Verify_ARejectedPayload_IsNotRemembered()
    {
        var table = new VerifiedStaticKeys();
        var staticKey = Curve25519KeyPair.Generate().PublicKey;
        var forged = NoisePayload.CreateSigned(Bob.PublicKey, Mallory, staticKey);

        Assert.Throws<NoiseException>(() => NoisePayload.Verify(forged, staticKey, table, out _));
        Assert.That(table.Find(Bob.PublicKey.ToProtobuf(), staticKey, SignatureOf(forged)), Is.Null);
    }

    [Test]
    public void Add_ForAStaticKeyInAnOccupiedSlot_ReplacesTheOlderEntry()
    {
        var table = new VerifiedStaticKeys();
        var identity = Bob.PublicKey.ToProtobuf();
        var signature = new byte[64];
        // The slot is the static key's first four bytes (little-endian) modulo the capacity: 0 and 1,024 share slot 0.
        var older = new byte[32];
        var newer = new byte[32];
        BitConverter.TryWriteBytes(newer, (uint)VerifiedStaticKeys.Capacity);

        table.Add(identity, older, signature, Bob.PublicKey);
        table.Add(identity, newer, signature, Bob.PublicKey);

        Assert.That(table.Find(identity, older, signature), Is.Null, "bounded: the older entry made room");
        Assert.That(table.Find(identity, newer, signature), Is.EqualTo(Bob.PublicKey));
    }

    private static byte[] SignatureOf(byte[] payload) =>
        P2PInference.Facilities.Net.Noise.Proto.NoiseHandshakePayload.Parser.ParseFrom(payload).IdentitySig.ToByteArray();
}
