using Google.Protobuf;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Noise;
using P2PInference.Facilities.Net.Noise.Proto;

namespace P2PInference.Tests.Unit.Noise;

/// <summary>
/// Bytes a remote controls at each Noise layer, malformed: each is a typed <see cref="NoiseException"/>
/// before any key is used, never an index or crypto exception from below.
/// </summary>
[TestFixture]
public sealed class NoiseMalformedInputTests
{
    private static readonly byte[] RemoteStatic = new byte[Curve25519KeyPair.KeySize];

    [Test]
    public void Payload_WithoutAnIdentityKey_IsRejected()
    {
        var payload = new NoiseHandshakePayload { IdentitySig = ByteString.CopyFrom(new byte[64]) }.ToByteArray();

        Assert.That(() => NoisePayload.Verify(payload, RemoteStatic), Throws.TypeOf<NoiseException>().With.Message.Contain("lacks the identity key"));
    }

    [Test]
    public void Payload_WithAnOversizedSignature_IsRejected_BeforeTheKeyIsParsed()
    {
        var identity = KeyPair.FromSeed(new byte[32]);
        var payload = new NoiseHandshakePayload
        {
            IdentityKey = ByteString.CopyFrom(identity.PublicKey.ToProtobuf()),
            IdentitySig = ByteString.CopyFrom(new byte[513]),
        }.ToByteArray();

        Assert.That(() => NoisePayload.Verify(payload, RemoteStatic), Throws.TypeOf<NoiseException>().With.Message.Contain("signature of 513 bytes"));
    }

    [Test]
    public void Payload_WithAMalformedIdentityKey_IsRejected()
    {
        var payload = new NoiseHandshakePayload
        {
            IdentityKey = ByteString.CopyFrom(0x08, 0x01, 0x12, 0x40),
            IdentitySig = ByteString.CopyFrom(new byte[64]),
        }.ToByteArray();

        Assert.That(() => NoisePayload.Verify(payload, RemoteStatic), Throws.TypeOf<NoiseException>().With.Message.Contain("malformed identity key"));
    }

    [Test]
    public void Transport_CiphertextShorterThanItsTag_IsRejected()
    {
        using var cipher = new CipherState();
        cipher.InitializeKey(new byte[CipherState.KeySize]);

        Assert.That(() => cipher.DecryptWithAd([], new byte[CipherState.TagSize - 1], new byte[16]),
            Throws.TypeOf<NoiseException>().With.Message.Contain("shorter than its 16-byte tag"));
        Assert.That(cipher.Nonce, Is.Zero, "a rejected message uses no nonce");
    }

    [TestCase(0, TestName = "Handshake_FirstMessageShorterThanAnEphemeralKey_IsRejected")]
    [TestCase(HandshakeState.MaxMessageSize + 1, TestName = "Handshake_MessageOverTheNoiseLimit_IsRejected")]
    public void Handshake_MessageOfTheWrongSize_IsRejected(int length)
    {
        using var key = Curve25519KeyPair.Generate();
        using var responder = new HandshakeState(initiator: false, [], key);

        Assert.That(responder.IsInitiator, Is.False);
        Assert.That(() => responder.ReadMessage(new byte[length]), Throws.TypeOf<NoiseException>());
    }

    [Test]
    public void KeyAgreement_WithARemoteKeyOfTheWrongLength_IsRejected()
    {
        using var key = Curve25519KeyPair.Generate();

        Assert.That(() => key.Agree(new byte[31], new byte[32]), Throws.TypeOf<NoiseException>().With.Message.Contain("31 bytes"));
        Assert.That(() => Curve25519KeyPair.FromPrivateKey(new byte[31]), Throws.ArgumentException);
    }
}
