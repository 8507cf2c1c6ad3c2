using Google.Protobuf;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Identity.Proto;
using P2PInference.TestKit;
using PublicKey = P2PInference.Facilities.Identity.PublicKey;

namespace P2PInference.Tests.Unit.Identity;

public sealed class KeyPairTests
{
    private static readonly byte[] Message = "noise-libp2p-static-key:"u8.ToArray();

    [Test]
    public void ImportPrivateKey_SpecVector_YieldsSpecPublicKeyAndPeerId()
    {
        var key = KeyPair.ImportPrivateKey(Convert.FromHexString(SpecVectors.Ed25519PrivateKeyHex));

        Assert.That(Convert.ToHexStringLower(key.PublicKey.ToProtobuf()), Is.EqualTo(SpecVectors.Ed25519PublicKeyHex));
        Assert.That(key.PeerId.ToString(), Is.EqualTo(SpecVectors.Ed25519PeerId));
    }

    [Test]
    public void ExportPrivateKey_SpecVector_ReproducesTheSpecBytes()
    {
        var bytes = Convert.FromHexString(SpecVectors.Ed25519PrivateKeyHex);
        Assert.That(KeyPair.ImportPrivateKey(bytes).ExportPrivateKey(), Is.EqualTo(bytes));
    }

    [Test]
    public void ExportImport_RoundTrip_KeepsPeerIdAndSigningKey()
    {
        var original = KeyPair.FromRandom(TestSeed.CreateRandom());
        var restored = KeyPair.ImportPrivateKey(original.ExportPrivateKey());

        Assert.That(restored.PeerId, Is.EqualTo(original.PeerId));
        Assert.That(restored.PublicKey, Is.EqualTo(original.PublicKey));
        Assert.That(original.PublicKey.Verify(Message, restored.Sign(Message)), Is.True);
    }

    [Test]
    public void Sign_Verify_AcceptsOwnSignature()
    {
        var key = KeyPair.Generate();
        var signature = key.Sign(Message);
        Assert.That(signature, Has.Length.EqualTo(64));
        Assert.That(key.PublicKey.Verify(Message, signature), Is.True);
    }

    [Test]
    public void Sign_IsDeterministic_ForTheSameKeyAndMessage()
    {
        var key = KeyPair.ImportPrivateKey(Convert.FromHexString(SpecVectors.Ed25519PrivateKeyHex));
        var first = key.Sign(Message);
        Assert.That(key.Sign(Message), Is.EqualTo(first));
    }

    [Test]
    public void Sign_MatchesRfc8032TestVector1()
    {
        // RFC 8032 §7.1 TEST 1: empty message.
        var key = KeyPair.FromSeed(Convert.FromHexString("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
        Assert.That(Convert.ToHexStringLower(key.PublicKey.Data), Is.EqualTo("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"));
        Assert.That(Convert.ToHexStringLower(key.Sign([])), Is.EqualTo(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"));
    }

    [Test]
    public void Verify_RejectsSignature_FromAnotherKey()
    {
        var random = TestSeed.CreateRandom();
        var signer = KeyPair.FromRandom(random);
        var other = KeyPair.FromRandom(random);
        Assert.That(other.PublicKey.Verify(Message, signer.Sign(Message)), Is.False);
    }

    [Test]
    public void Verify_RejectsSignature_OverAnotherMessage()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        Assert.That(key.PublicKey.Verify("other"u8, key.Sign(Message)), Is.False);
    }

    [Test]
    public void Verify_RejectsTamperedSignature_AtEveryByte()
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        var signature = key.Sign(Message);
        for (var i = 0; i < signature.Length; i++)
        {
            var tampered = (byte[])signature.Clone();
            tampered[i] ^= 0x01;
            Assert.That(key.PublicKey.Verify(Message, tampered), Is.False, $"flipped byte {i}");
        }
    }

    [TestCase(0)]
    [TestCase(63)]
    [TestCase(65)]
    public void Verify_ReturnsFalse_ForSignatureOfWrongLength(int length)
    {
        var key = KeyPair.FromRandom(TestSeed.CreateRandom());
        Assert.That(key.PublicKey.Verify(Message, new byte[length]), Is.False);
    }

    [Test]
    public void Verify_ReturnsFalse_ForAllZeroSignatureAndKey()
    {
        var key = new PublicKey(KeyType.Ed25519, new byte[32]);
        Assert.That(key.Verify(Message, new byte[64]), Is.False);
    }

    [Test]
    public void FromRandom_IsReproducible_FromTheSameSeed()
    {
        var first = KeyPair.FromRandom(new Random(42)).PeerId;
        Assert.That(KeyPair.FromRandom(new Random(42)).PeerId, Is.EqualTo(first));
        Assert.That(KeyPair.FromRandom(new Random(42)).PeerId, Is.Not.EqualTo(KeyPair.FromRandom(new Random(43)).PeerId));
    }

    [Test]
    public void FromSeed_RejectsWrongSeedLength()
    {
        Assert.That(() => KeyPair.FromSeed(new byte[31]), Throws.ArgumentException);
    }

    [Test]
    public void ImportPrivateKey_AcceptsSeedOnlyAndLegacy96ByteForms()
    {
        var expected = KeyPair.ImportPrivateKey(Convert.FromHexString(SpecVectors.Ed25519PrivateKeyHex));
        var seed = Convert.FromHexString(SpecVectors.Ed25519PrivateKeyHex)[4..36];
        var pub = expected.PublicKey.Data.ToArray();

        Assert.That(KeyPair.ImportPrivateKey(Envelope(KeyType.Ed25519, seed)).PeerId, Is.EqualTo(expected.PeerId));
        Assert.That(KeyPair.ImportPrivateKey(Envelope(KeyType.Ed25519, [.. seed, .. pub, .. pub])).PeerId, Is.EqualTo(expected.PeerId));
    }

    [Test]
    public void ImportPrivateKey_RejectsLegacyForm_WhosePublicKeyCopiesDiffer()
    {
        var seed = Convert.FromHexString(SpecVectors.Ed25519PrivateKeyHex)[4..36];
        var pub = KeyPair.FromSeed(seed).PublicKey.Data.ToArray();
        var other = (byte[])pub.Clone();
        other[0] ^= 1;
        Assert.That(() => KeyPair.ImportPrivateKey(Envelope(KeyType.Ed25519, [.. seed, .. pub, .. other])),
            Throws.TypeOf<FormatException>());
    }

    [Test]
    public void ImportPrivateKey_RejectsEmbeddedPublicKeyThatDoesNotMatchSeed()
    {
        var bytes = Convert.FromHexString(SpecVectors.Ed25519PrivateKeyHex);
        bytes[^1] ^= 0x01;
        Assert.That(() => KeyPair.ImportPrivateKey(bytes), Throws.TypeOf<FormatException>().With.Message.Contains("does not match"));
    }

    [Test]
    public void ImportPrivateKey_RejectsOtherKeyTypes()
    {
        Assert.That(() => KeyPair.ImportPrivateKey(Envelope(KeyType.Rsa, new byte[64])),
            Throws.TypeOf<FormatException>().With.Message.Contains("Ed25519"));
    }

    [TestCase(0)]
    [TestCase(31)]
    [TestCase(33)]
    [TestCase(63)]
    [TestCase(128)]
    public void ImportPrivateKey_RejectsWrongDataLength(int length)
    {
        Assert.That(() => KeyPair.ImportPrivateKey(Envelope(KeyType.Ed25519, new byte[length])), Throws.TypeOf<FormatException>());
    }

    [TestCase("")]
    [TestCase("0801")]
    [TestCase("1240")]
    [TestCase("08011240")]
    [TestCase("ffffffff")]
    public void ImportPrivateKey_RejectsMalformedEnvelopes(string hex)
    {
        Assert.That(() => KeyPair.ImportPrivateKey(Convert.FromHexString(hex)), Throws.TypeOf<FormatException>());
    }

    [Test]
    public void ImportPrivateKey_RejectsRandomBytes_WithFormatExceptionOnly()
    {
        var random = TestSeed.CreateRandom();
        for (var i = 0; i < 800; i++)
        {
            var bytes = new byte[random.Next(0, 100)];
            random.NextBytes(bytes);
            try
            {
                KeyPair.ImportPrivateKey(bytes);
            }
            catch (FormatException)
            {
            }
        }
        Assert.Pass();
    }

    internal static byte[] Envelope(KeyType type, byte[] data) =>
        new PrivateKey { Type = type, Data = ByteString.CopyFrom(data) }.ToByteArray();
}
