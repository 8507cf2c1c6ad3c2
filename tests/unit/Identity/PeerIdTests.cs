using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.TestKit;
using PublicKey = P2PInference.Facilities.Identity.PublicKey;

namespace P2PInference.Tests.Unit.Identity;

public sealed class PeerIdTests
{
    [Test]
    public void FromPublicKey_SpecVector_IsIdentityMultihashInBase58()
    {
        var key = PublicKey.FromProtobuf(Convert.FromHexString(SpecVectors.Ed25519PublicKeyHex));
        var id = PeerId.FromPublicKey(key);

        Assert.That(id.ToString(), Is.EqualTo(SpecVectors.Ed25519PeerId));
        Assert.That(Convert.ToHexStringLower(id.Bytes), Is.EqualTo("0024" + SpecVectors.Ed25519PublicKeyHex));
        Assert.That(id.ToString(), Does.StartWith("12D3KooW"));
    }

    [Test]
    public void Parse_Base58_RoundTripsAndExposesTheKey()
    {
        var id = PeerId.Parse(SpecVectors.Ed25519PeerId);
        Assert.That(id.ToString(), Is.EqualTo(SpecVectors.Ed25519PeerId));
        Assert.That(id.TryGetPublicKey(), Is.EqualTo(PublicKey.FromProtobuf(Convert.FromHexString(SpecVectors.Ed25519PublicKeyHex))));
        Assert.That(id.Matches(id.TryGetPublicKey()!), Is.True);
    }

    [Test]
    public void Parse_Sha256Form_HasNoInlineKey()
    {
        var id = PeerId.Parse(SpecVectors.Sha256PeerId);
        Assert.That(Convert.ToHexStringLower(id.Bytes), Is.EqualTo(SpecVectors.Sha256PeerIdMultihashHex));
        Assert.That(id.ToString(), Is.EqualTo(SpecVectors.Sha256PeerId));
        Assert.That(id.TryGetPublicKey(), Is.Null);
    }

    [Test]
    public void Parse_CidV1_EqualsTheBase58Form()
    {
        Assert.That(PeerId.Parse(SpecVectors.Sha256PeerIdCid), Is.EqualTo(PeerId.Parse(SpecVectors.Sha256PeerId)));
        Assert.That(PeerId.Parse(SpecVectors.Ed25519ExamplePeerIdCid), Is.EqualTo(PeerId.Parse(SpecVectors.Ed25519ExamplePeerId)));
    }

    [Test]
    public void Parse_CidV1_AcceptsUpperCaseBase32AndBase58Multibase()
    {
        var expected = PeerId.Parse(SpecVectors.Sha256PeerId);
        Assert.That(PeerId.Parse("B" + SpecVectors.Sha256PeerIdCid[1..].ToUpperInvariant()), Is.EqualTo(expected));
        Assert.That(PeerId.Parse("z" + Base58.Encode([0x01, 0x72, .. expected.Bytes])), Is.EqualTo(expected));
    }

    [Test]
    public void ToCidString_MatchesTheSpecExample()
    {
        Assert.That(PeerId.Parse(SpecVectors.Sha256PeerId).ToCidString(), Is.EqualTo(SpecVectors.Sha256PeerIdCid));
        Assert.That(PeerId.Parse(SpecVectors.Ed25519ExamplePeerId).ToCidString(), Is.EqualTo(SpecVectors.Ed25519ExamplePeerIdCid));
    }

    [Test]
    public void FromPublicKey_HashesEnvelopesLongerThan42Bytes()
    {
        var rsaLike = new PublicKey(Facilities.Identity.Proto.KeyType.Rsa, new byte[270]);
        var id = PeerId.FromPublicKey(rsaLike);
        Assert.That(id.Bytes[0], Is.EqualTo(0x12));
        Assert.That(id.Bytes[1], Is.EqualTo(32));
        Assert.That(id.ToString(), Does.StartWith("Qm"));
        Assert.That(id.Matches(rsaLike), Is.True);
        Assert.That(PeerId.FromBytes(id.Bytes), Is.EqualTo(id));
    }

    [Test]
    public void Equality_HashAndOrder_FollowTheBytes()
    {
        var random = TestSeed.CreateRandom();
        var a = KeyPair.FromRandom(random).PeerId;
        var a2 = PeerId.Parse(a.ToString());
        var b = KeyPair.FromRandom(random).PeerId;

        Assert.That(a == a2, Is.True);
        Assert.That(a != b, Is.True);
        Assert.That(a.GetHashCode(), Is.EqualTo(a2.GetHashCode()));
        Assert.That(a.CompareTo(a2), Is.Zero);
        Assert.That(Math.Sign(a.CompareTo(b)), Is.EqualTo(-Math.Sign(b.CompareTo(a))));
        Assert.That(a.CompareTo(null), Is.Positive);
    }

    [Test]
    public void Matches_IsFalse_ForAnotherKey()
    {
        var random = TestSeed.CreateRandom();
        Assert.That(KeyPair.FromRandom(random).PeerId.Matches(KeyPair.FromRandom(random).PublicKey), Is.False);
    }

    [TestCase("")]
    [TestCase("hello")]
    [TestCase("Qm")]
    [TestCase("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5")]
    [TestCase("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5NN")]
    [TestCase("12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3p0")]
    [TestCase("12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3p")]
    [TestCase("b")]
    [TestCase("bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqx")]
    [TestCase("bafybeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe")]
    [TestCase("z")]
    [TestCase("1")]
    [TestCase("11111111")]
    public void Parse_RejectsMalformedText(string text)
    {
        Assert.That(() => PeerId.Parse(text), Throws.TypeOf<FormatException>());
        Assert.That(PeerId.TryParse(text, out var id), Is.False);
        Assert.That(id, Is.Null);
    }

    [Test]
    public void Parse_RejectsCidWithOtherCodec()
    {
        var mh = PeerId.Parse(SpecVectors.Sha256PeerId).ToByteArray();
        Assert.That(() => PeerId.Parse("b" + Base32.Encode([0x01, 0x55, .. mh])),
            Throws.TypeOf<FormatException>().With.Message.Contains("libp2p-key"));
        Assert.That(() => PeerId.Parse("b" + Base32.Encode([0x02, 0x72, .. mh])),
            Throws.TypeOf<FormatException>().With.Message.Contains("version"));
    }

    [Test]
    public void TryParse_ReturnsFalse_ForNull()
    {
        Assert.That(PeerId.TryParse(null, out _), Is.False);
    }

    [TestCase("")]
    [TestCase("00")]
    [TestCase("0000")]
    [TestCase("0024")]
    [TestCase("1220")]
    [TestCase("12200000")]
    [TestCase("1101ff")]
    [TestCase("8000")]
    [TestCase("00ffffffffffffffff7f")]
    [TestCase("00ffffffffffffffffff01")]
    public void FromBytes_RejectsTruncatedOversizedOrUnknownMultihashes(string hex)
    {
        Assert.That(() => PeerId.FromBytes(Convert.FromHexString(hex)), Throws.TypeOf<FormatException>());
    }

    [Test]
    public void FromBytes_RejectsInputPastTheBound_BeforeParsing()
    {
        Assert.That(() => PeerId.FromBytes(new byte[PeerId.MaxLength + 1]), Throws.TypeOf<FormatException>());
    }

    [Test]
    public void FromBytes_RejectsRandomBytes_WithFormatExceptionOnly()
    {
        var random = TestSeed.CreateRandom();
        var valid = PeerId.Parse(SpecVectors.Ed25519PeerId).ToByteArray();
        for (var i = 0; i < 3000; i++)
        {
            byte[] bytes;
            if (i % 2 == 0)
            {
                bytes = new byte[random.Next(0, 80)];
                random.NextBytes(bytes);
            }
            else
            {
                // Mutations of a valid id reach the key-envelope parser.
                bytes = (byte[])valid.Clone();
                bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
                bytes = bytes[..random.Next(bytes.Length + 1)];
            }
            try
            {
                var id = PeerId.FromBytes(bytes);
                Assert.That(id.ToByteArray(), Is.EqualTo(bytes));
                _ = id.TryGetPublicKey();
            }
            catch (FormatException)
            {
            }
        }
    }
}
