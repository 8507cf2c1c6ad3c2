using P2PInference.Facilities.Net.Noise;

namespace P2PInference.Tests.Unit.Noise;

/// <summary>
/// The Noise primitives (SymmetricState, CipherState, X25519) against the cacophony test vector for
/// Noise_NN_25519_ChaChaPoly_SHA256: same hash, HKDF, nonce layout and AEAD as libp2p's XX suite.
/// Message 2 is encrypted with the handshake hash as associated data, so matching it checks the hash
/// chain; the vector's own handshake_hash field is not compared (its definition differs across vector
/// generators), and the transport messages check Split.
/// </summary>
[TestFixture]
public sealed class NoiseVectorTests
{
    private static readonly byte[] Prologue = Convert.FromHexString("4a6f686e2047616c74");
    private static readonly byte[] InitiatorEphemeral = Convert.FromHexString("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a");
    private static readonly byte[] ResponderEphemeral = Convert.FromHexString("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b");

    [Test]
    public void Primitives_ReproduceCacophonyVector_ForNN25519ChaChaPolySha256()
    {
        using var initiator = new SymmetricState("Noise_NN_25519_ChaChaPoly_SHA256");
        using var responder = new SymmetricState("Noise_NN_25519_ChaChaPoly_SHA256");
        using var ie = Curve25519KeyPair.FromPrivateKey(InitiatorEphemeral);
        using var re = Curve25519KeyPair.FromPrivateKey(ResponderEphemeral);
        initiator.MixHash(Prologue);
        responder.MixHash(Prologue);
        var shared = new byte[32];

        // -> e
        var message1 = new byte[32 + 16];
        ie.PublicKey.CopyTo(message1, 0);
        initiator.MixHash(ie.PublicKey);
        var written = initiator.EncryptAndHash(Convert.FromHexString("4c756477696720766f6e204d69736573"), message1.AsSpan(32));
        Assert.That(Convert.ToHexStringLower(message1.AsSpan(0, 32 + written)),
            Is.EqualTo("ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444c756477696720766f6e204d69736573"));
        responder.MixHash(message1.AsSpan(0, 32));
        responder.DecryptAndHash(message1.AsSpan(32, written));

        // <- e, ee
        var message2 = new byte[32 + 15 + 16];
        re.PublicKey.CopyTo(message2, 0);
        responder.MixHash(re.PublicKey);
        re.Agree(ie.PublicKey, shared);
        responder.MixKey(shared);
        written = responder.EncryptAndHash(Convert.FromHexString("4d757272617920526f746862617264"), message2.AsSpan(32));
        Assert.That(Convert.ToHexStringLower(message2.AsSpan(0, 32 + written)),
            Is.EqualTo("95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843a0ff96bdf86b579ef7dbf94e812a7470b903c20a85a87e3a1fe863264ae547"));
        initiator.MixHash(message2.AsSpan(0, 32));
        ie.Agree(re.PublicKey, shared);
        initiator.MixKey(shared);
        Assert.That(initiator.DecryptAndHash(message2.AsSpan(32, written)), Is.EqualTo(Convert.FromHexString("4d757272617920526f746862617264")));

        var (initiatorToResponder, responderToInitiator) = initiator.Split();
        using var i2r = initiatorToResponder;
        using var r2i = responderToInitiator;
        Assert.Multiple(() =>
        {
            Assert.That(Encrypt(i2r, "462e20412e20486179656b"), Is.EqualTo("eb1a3e3d80c1792b1bb9cb0e1382f8d8322bfb1ca7c4c8517bb686"));
            Assert.That(Encrypt(r2i, "4361726c204d656e676572"), Is.EqualTo("c781b198d2a974eb1da2c7d518c000cf6396de87ca540963c03713"));
            Assert.That(Encrypt(i2r, "4a65616e2d426170746973746520536179"), Is.EqualTo("c77048eb6919fdfe8fe45842bfc5b8d1ff50d1e20c717453ccdfe6176d805b996d"));
            Assert.That(Encrypt(r2i, "457567656e2042f6686d20766f6e2042617765726b"), Is.EqualTo("61834d7069dcfb7a1adf8d5ac910f83fa04c73a67789895c6f5f995c5db2ce88e49b124178"));

        });
    }

    [Test]
    public void HandshakeState_XX_AgreesOnKeysAndHash_AndDecryptsInPlace()
    {
        using var si = Curve25519KeyPair.FromPrivateKey(Convert.FromHexString("e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1"));
        using var sr = Curve25519KeyPair.FromPrivateKey(Convert.FromHexString("4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893"));
        using var initiator = new HandshakeState(true, Prologue, si, InitiatorEphemeral);
        using var responder = new HandshakeState(false, Prologue, sr, ResponderEphemeral);
        var buffer = new byte[1024];

        var length = initiator.WriteMessage("one"u8, buffer);
        Assert.That(responder.ReadMessage(buffer.AsSpan(0, length)), Is.EqualTo("one"u8.ToArray()));
        length = responder.WriteMessage("two"u8, buffer);
        Assert.That(length, Is.EqualTo(32 + 48 + 3 + 16));
        Assert.That(initiator.ReadMessage(buffer.AsSpan(0, length)), Is.EqualTo("two"u8.ToArray()));
        length = initiator.WriteMessage("three"u8, buffer);
        Assert.That(responder.ReadMessage(buffer.AsSpan(0, length)), Is.EqualTo("three"u8.ToArray()));

        Assert.That(initiator.RemoteStaticPublicKey, Is.EqualTo(sr.PublicKey));
        Assert.That(responder.RemoteStaticPublicKey, Is.EqualTo(si.PublicKey));
        Assert.That(initiator.HandshakeHash.SequenceEqual(responder.HandshakeHash), Is.True);

        var (iSend, iReceive) = initiator.Split();
        var (rSend, rReceive) = responder.Split();
        using var _1 = iSend; using var _2 = iReceive; using var _3 = rSend; using var _4 = rReceive;
        var wire = new byte[5 + 16];
        iSend.EncryptWithAd(default, "hello"u8, wire);
        var plain = rReceive.DecryptWithAd(default, wire, wire); // in place, as the secure stream does
        Assert.That(wire.AsSpan(0, plain).ToArray(), Is.EqualTo("hello"u8.ToArray()));
    }

    private static string Encrypt(CipherState cipher, string plaintextHex)
    {
        var plaintext = Convert.FromHexString(plaintextHex);
        var ciphertext = new byte[plaintext.Length + 16];
        cipher.EncryptWithAd(ReadOnlySpan<byte>.Empty, plaintext, ciphertext);
        return Convert.ToHexStringLower(ciphertext);
    }
}
