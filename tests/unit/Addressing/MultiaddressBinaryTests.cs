using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.TestKit;

namespace P2PInference.Tests.Unit.Addressing;

public sealed class MultiaddressBinaryTests
{
    [TestCase("04", "ip4")]
    [TestCase("047f0000", "ip4")]
    [TestCase("047f00000106", "tcp")]
    [TestCase("047f0000010600", "tcp")]
    [TestCase("29000000000000000000000000000000", "ip6")]
    [TestCase("36", "varint")]
    [TestCase("3605616263", "dns4")]
    [TestCase("a503", "varint")]
    [TestCase("a50322", "p2p")]
    [TestCase("a5", "varint")]
    [TestCase("9102", "udp")]
    public void FromBytes_RejectsTruncatedInput(string hex, string message)
    {
        Assert.That(() => Multiaddress.FromBytes(Convert.FromHexString(hex)), Throws.TypeOf<FormatException>().With.Message.Contains(message));
    }

    [TestCase("00")]
    [TestCase("05")]
    [TestCase("7f")]
    [TestCase("ffff03")]
    [TestCase("ffffffffffffffffff01")]
    public void FromBytes_RejectsUnknownProtocolCodes(string hex)
    {
        Assert.That(() => Multiaddress.FromBytes(Convert.FromHexString(hex)), Throws.TypeOf<FormatException>().With.Message.Contains("unknown"));
    }

    [TestCase(1UL << 31)]
    [TestCase(1UL << 32)]
    [TestCase(1UL << 62)]
    [TestCase(1UL << 63)]
    [TestCase(ulong.MaxValue)]
    [TestCase((ulong)int.MaxValue)]
    [TestCase(1025UL)]
    public void FromBytes_RejectsOversizedLengthPrefixes_WithoutAllocating(ulong declared)
    {
        foreach (var code in new[] { MultiaddressProtocol.Dns4, MultiaddressProtocol.P2p, MultiaddressProtocol.Memory })
        {
            byte[] bytes = [.. Varint.Encode((ulong)code.Code), .. Varint.Encode(declared), 0x61, 0x62];
            Assert.That(() => Multiaddress.FromBytes(bytes), Throws.TypeOf<FormatException>().With.Message.Contains("truncated"));
        }
    }

    [Test]
    public void FromBytes_RejectsOverlongVarints()
    {
        Assert.That(() => Multiaddress.FromBytes(Convert.FromHexString("36ffffffffffffffffff02")), Throws.TypeOf<FormatException>());
        Assert.That(() => Multiaddress.FromBytes(Convert.FromHexString("8400")), Throws.TypeOf<FormatException>());
    }

    [Test]
    public void FromBytes_RejectsInputPastTheBound()
    {
        Assert.That(() => Multiaddress.FromBytes(new byte[Multiaddress.MaxLength + 1]), Throws.TypeOf<FormatException>());
    }

    [TestCase("3600", "empty")]
    [TestCase("8906 00", "empty")]
    [TestCase("3603612f62", "'/'")]
    [TestCase("3602c328", "UTF-8")]
    [TestCase("890601ff", "UTF-8")]
    [TestCase("a50302 0000", "")]
    [TestCase("a50302 1100", "")]
    public void FromBytes_RejectsInvalidValues(string hex, string message)
    {
        Assert.That(() => Multiaddress.FromBytes(Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal))),
            Throws.TypeOf<FormatException>().With.Message.Contains(message));
    }

    [Test]
    [CancelAfter(30000)]
    public void FromBytes_RandomInput_ThrowsOnlyFormatException_AndValidResultsRoundTrip()
    {
        var random = TestSeed.CreateRandom();
        var seeds = new[]
        {
            Multiaddress.Parse("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq").ToByteArray(),
            Multiaddress.Parse("/dns6/example.com/tcp/1/ws").ToByteArray(),
            Multiaddress.Parse("/ip6/::1/udp/9/quic-v1/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N").ToByteArray(),
            Multiaddress.Parse("/memory/abc/p2p-circuit").ToByteArray(),
        };
        var accepted = 0;
        for (var i = 0; i < 6000; i++)
        {
            byte[] bytes;
            if (i % 2 == 0)
            {
                bytes = new byte[random.Next(0, 48)];
                random.NextBytes(bytes);
            }
            else
            {
                bytes = (byte[])seeds[random.Next(seeds.Length)].Clone();
                var mutations = random.Next(1, 4);
                for (var m = 0; m < mutations; m++) bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
                bytes = bytes[..random.Next(bytes.Length + 1)];
            }
            Multiaddress parsed;
            try
            {
                parsed = Multiaddress.FromBytes(bytes);
            }
            catch (FormatException)
            {
                continue;
            }
            accepted++;
            Assert.That(parsed.ToByteArray(), Is.EqualTo(bytes), "accepted bytes re-encode identically");
            Assert.That(Multiaddress.Parse(parsed.ToString()), Is.EqualTo(parsed), $"text form '{parsed}' round-trips");
            _ = parsed.PeerId;
            _ = parsed.TcpHostPort();
        }
        Assert.That(accepted, Is.Positive, "some mutated inputs stay valid");
    }

    [Test]
    [CancelAfter(30000)]
    public void Parse_RandomText_ThrowsOnlyFormatException()
    {
        var random = TestSeed.CreateRandom();
        string[] pieces = ["/", "ip4", "ip6", "tcp", "udp", "dns", "dns4", "p2p", "memory", "1.2.3.4", "::1", "80", "70000", "x", "", "%", "12D3KooW", "ipfs", "p2p-circuit", "ws"];
        for (var i = 0; i < 5000; i++)
        {
            var text = string.Concat(Enumerable.Range(0, random.Next(0, 8)).Select(_ => pieces[random.Next(pieces.Length)]));
            try
            {
                var parsed = Multiaddress.Parse(text);
                Assert.That(Multiaddress.FromBytes(parsed.Bytes), Is.EqualTo(parsed));
            }
            catch (FormatException)
            {
            }
        }
    }
}
