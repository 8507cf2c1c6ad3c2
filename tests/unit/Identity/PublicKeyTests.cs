using Google.Protobuf;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Identity.Proto;
using P2PInference.TestKit;
using PublicKey = P2PInference.Facilities.Identity.PublicKey;

namespace P2PInference.Tests.Unit.Identity;

public sealed class PublicKeyTests
{
    [Test]
    public void FromProtobuf_SpecVector_RoundTrips()
    {
        var bytes = Convert.FromHexString(SpecVectors.Ed25519PublicKeyHex);
        var key = PublicKey.FromProtobuf(bytes);
        Assert.That(key.Type, Is.EqualTo(KeyType.Ed25519));
        Assert.That(key.ToProtobuf(), Is.EqualTo(bytes));
        Assert.That(key.ToPeerId().ToString(), Is.EqualTo(SpecVectors.Ed25519PeerId));
    }

    [Test]
    public void Equality_FollowsTypeAndBytes()
    {
        var a = PublicKey.FromProtobuf(Convert.FromHexString(SpecVectors.Ed25519PublicKeyHex));
        var b = PublicKey.FromProtobuf(Convert.FromHexString(SpecVectors.Ed25519PublicKeyHex));
        Assert.That(a, Is.EqualTo(b));
        Assert.That(a.GetHashCode(), Is.EqualTo(b.GetHashCode()));
        Assert.That(a, Is.Not.EqualTo(KeyPair.FromRandom(TestSeed.CreateRandom()).PublicKey));
    }

    [Test]
    public void GetHashCode_Works_ForShortKeysOfOtherTypes()
    {
        var key = PublicKey.FromProtobuf(new Facilities.Identity.Proto.PublicKey { Type = KeyType.Rsa, Data = ByteString.Empty }.ToByteArray());
        Assert.That(() => key.GetHashCode(), Throws.Nothing);
        Assert.That(new HashSet<PublicKey> { key }, Has.Count.EqualTo(1));
    }

    [Test]
    public void Verify_Throws_ForKeyTypesItCannotCheck()
    {
        var key = new PublicKey(KeyType.Secp256K1, new byte[33]);
        Assert.That(() => key.Verify([1], new byte[64]), Throws.TypeOf<NotSupportedException>());
    }

    [TestCase("")]
    [TestCase("0801")]
    [TestCase("08011220")]
    [TestCase("0801120400000000")]
    [TestCase("1220" + "0000000000000000000000000000000000000000000000000000000000000000")]
    public void FromProtobuf_RejectsMalformedEnvelopes(string hex)
    {
        Assert.That(() => PublicKey.FromProtobuf(Convert.FromHexString(hex)), Throws.TypeOf<FormatException>());
    }

    [Test]
    public void FromProtobuf_RejectsOversizedEnvelope_BeforeParsing()
    {
        Assert.That(() => PublicKey.FromProtobuf(new byte[PublicKey.MaxEncodedLength + 1]),
            Throws.TypeOf<FormatException>().With.Message.Contains("more than"));
    }

    [Test]
    public void FromProtobuf_RejectsRandomBytes_WithFormatExceptionOnly()
    {
        var random = TestSeed.CreateRandom();
        for (var i = 0; i < 2000; i++)
        {
            var bytes = new byte[random.Next(0, 64)];
            random.NextBytes(bytes);
            if (random.Next(2) == 0 && bytes.Length > 4)
            {
                // Mostly-valid prefix to reach deeper into the parser.
                bytes[0] = 0x08;
                bytes[1] = 0x01;
                bytes[2] = 0x12;
            }
            try
            {
                PublicKey.FromProtobuf(bytes);
            }
            catch (FormatException)
            {
            }
        }
        Assert.Pass();
    }
}
