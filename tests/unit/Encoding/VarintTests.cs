using P2PInference.Facilities.Encoding;

namespace P2PInference.Tests.Unit.Encoding;

public sealed class VarintTests
{
    [TestCase(0UL, "00")]
    [TestCase(1UL, "01")]
    [TestCase(127UL, "7f")]
    [TestCase(128UL, "8001")]
    [TestCase(255UL, "ff01")]
    [TestCase(300UL, "ac02")]
    [TestCase(16384UL, "808001")]
    [TestCase(273UL, "9102")]
    [TestCase(421UL, "a503")]
    [TestCase(ulong.MaxValue, "ffffffffffffffffff01")]
    public void Encode_MatchesUnsignedVarintSpec(ulong value, string hex)
    {
        Assert.That(Convert.ToHexStringLower(Varint.Encode(value)), Is.EqualTo(hex));
        Assert.That(Varint.GetLength(value), Is.EqualTo(hex.Length / 2));
        Assert.That(Varint.Read(Convert.FromHexString(hex), out var consumed), Is.EqualTo(value));
        Assert.That(consumed, Is.EqualTo(hex.Length / 2));
    }

    [Test]
    public void Read_RoundTrips_EveryPowerOfTwoBoundary()
    {
        for (var bit = 0; bit < 64; bit++)
        {
            foreach (var value in new[] { (1UL << bit) - 1, 1UL << bit, (1UL << bit) + 1 })
            {
                var bytes = Varint.Encode(value);
                Assert.That(Varint.Read(bytes, out var consumed), Is.EqualTo(value));
                Assert.That(consumed, Is.EqualTo(bytes.Length));
            }
        }
    }

    [Test]
    public void Read_StopsAtTheVarint_WhenMoreBytesFollow()
    {
        Assert.That(Varint.Read([0xac, 0x02, 0xff, 0xff], out var consumed), Is.EqualTo(300UL));
        Assert.That(consumed, Is.EqualTo(2));
    }

    [Test]
    public void TryRead_ReturnsFalse_WhenTruncated()
    {
        Assert.That(Varint.TryRead([], out _, out _), Is.False);
        Assert.That(Varint.TryRead([0x80], out _, out _), Is.False);
        Assert.That(Varint.TryRead([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], out _, out var consumed), Is.False);
        Assert.That(consumed, Is.Zero);
    }

    [Test]
    public void Read_Throws_WhenTruncated()
    {
        Assert.That(() => Varint.Read([0x80, 0x80], out _), Throws.TypeOf<FormatException>());
    }

    [TestCase("8000")]
    [TestCase("ff00")]
    [TestCase("808000")]
    [TestCase("ffffffffffffffffff00")]
    public void Read_RejectsNonMinimalEncoding(string hex)
    {
        Assert.That(() => Varint.Read(Convert.FromHexString(hex), out _),
            Throws.TypeOf<FormatException>().With.Message.Contains("minimal"));
    }

    [TestCase("ffffffffffffffffff02")]
    [TestCase("ffffffffffffffffff7f")]
    [TestCase("ffffffffffffffffff8001")]
    [TestCase("ffffffffffffffffffffffff")]
    public void Read_RejectsValuesPast64Bits(string hex)
    {
        Assert.That(() => Varint.Read(Convert.FromHexString(hex), out _),
            Throws.TypeOf<FormatException>().With.Message.Contains("64 bits"));
    }

    [Test]
    public void Write_ToBufferWriter_AppendsTheEncoding()
    {
        var writer = new System.Buffers.ArrayBufferWriter<byte>();
        Varint.Write(writer, 300);
        Varint.Write(writer, 1);
        Assert.That(writer.WrittenSpan.ToArray(), Is.EqualTo(new byte[] { 0xac, 0x02, 0x01 }));
    }

    [Test]
    [CancelAfter(10000)]
    public async Task ReadAsync_ReadsConsecutiveVarints_ThenNullAtCleanEnd(CancellationToken cancellationToken)
    {
        using var stream = new MemoryStream([0xac, 0x02, 0x00, .. Varint.Encode(ulong.MaxValue)]);
        Assert.That(await Varint.ReadAsync(stream, cancellationToken), Is.EqualTo(300UL));
        Assert.That(await Varint.ReadAsync(stream, cancellationToken), Is.EqualTo(0UL));
        Assert.That(await Varint.ReadAsync(stream, cancellationToken), Is.EqualTo(ulong.MaxValue));
        Assert.That(await Varint.ReadAsync(stream, cancellationToken), Is.Null);
    }

    [Test]
    [CancelAfter(10000)]
    public void ReadAsync_Throws_OnEndInsideVarint(CancellationToken cancellationToken)
    {
        using var stream = new MemoryStream([0x80, 0x80]);
        Assert.That(async () => await Varint.ReadAsync(stream, cancellationToken), Throws.TypeOf<EndOfStreamException>());
    }

    [TestCase("8000", "minimal")]
    [TestCase("ffffffffffffffffff02", "64 bits")]
    [TestCase("ffffffffffffffffffff01", "64 bits")]
    [CancelAfter(10000)]
    public void ReadAsync_RejectsMalformedVarints(string hex, string message, CancellationToken cancellationToken)
    {
        using var stream = new MemoryStream(Convert.FromHexString(hex));
        Assert.That(async () => await Varint.ReadAsync(stream, cancellationToken),
            Throws.TypeOf<FormatException>().With.Message.Contains(message));
    }
}
