using System.Buffers.Binary;
using System.Net;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit;
using P2PInference.Tests.Unit.Protocols;

namespace P2PInference.Tests.Unit.Transport;

/// <summary>The PROXY protocol header a load balancer sends before a connection's bytes: what it names, and every way it can be wrong.</summary>
[TestFixture]
public sealed class ProxyProtocolHeaderTests
{
    private static readonly byte[] Signature = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
    private static readonly byte[] After = "/multistream/1.0.0\n"u8.ToArray();

    private static CancellationToken Token => CancellationToken.None;

    private static byte[] V1(string line) => System.Text.Encoding.ASCII.GetBytes(line);

    private static byte[] V2(byte command, byte family, byte[] block)
    {
        var header = new byte[16 + block.Length];
        Signature.CopyTo(header, 0);
        header[12] = command;
        header[13] = family;
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(14), (ushort)block.Length);
        block.CopyTo(header, 16);
        return header;
    }

    private static byte[] Addresses(string source, string destination, ushort sourcePort, ushort destinationPort)
    {
        byte[] ports = new byte[4];
        BinaryPrimitives.WriteUInt16BigEndian(ports, sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(ports.AsSpan(2), destinationPort);
        return [.. IPAddress.Parse(source).GetAddressBytes(), .. IPAddress.Parse(destination).GetAddressBytes(), .. ports];
    }

    private static readonly byte[] V2Ip4 = V2(0x21, 0x11, Addresses("203.0.113.7", "198.51.100.1", 4001, 443));

    private static async Task<(ProxyProtocolHeader Header, byte[] Remainder)> ReadAsync(byte[] header)
    {
        var stream = new ScriptedStream([.. header, .. After]);
        var result = await ProxyProtocolHeader.ReadAsync(stream, Token);
        var rest = new byte[After.Length + 1];
        var restLength = await stream.ReadAtLeastAsync(rest, rest.Length, throwOnEndOfStream: false, Token);
        return (result, rest[..restLength]);
    }

    private static async Task<ProxyProtocolException> RefusedAsync(byte[] input)
    {
        try
        {
            await ProxyProtocolHeader.ReadAsync(new ScriptedStream(input), Token);
        }
        catch (ProxyProtocolException e)
        {
            return e;
        }
        Assert.Fail($"no ProxyProtocolException for {Convert.ToHexString(input)}");
        return null!;
    }

    [TestCase("PROXY TCP4 203.0.113.7 198.51.100.1 4001 443\r\n", "203.0.113.7:4001", "198.51.100.1:443")]
    [TestCase("PROXY TCP6 2001:db8::7 2001:db8::1 4001 443\r\n", "[2001:db8::7]:4001", "[2001:db8::1]:443")]
    [TestCase("PROXY TCP6 ::ffff:203.0.113.7 ::ffff:198.51.100.1 65535 0\r\n", "203.0.113.7:65535", "198.51.100.1:0")]
    public async Task V1_NamesTheClient_AndLeavesTheConnectionsBytes(string line, string source, string destination)
    {
        var (header, rest) = await ReadAsync(V1(line));

        Assert.That(header.Version, Is.EqualTo(1));
        Assert.That(header.Source, Is.EqualTo(IPEndPoint.Parse(source)), "an IPv4 client named as IPv6-mapped counts as the IPv4 address it is");
        Assert.That(header.Destination, Is.EqualTo(IPEndPoint.Parse(destination)));
        Assert.That(header.Length, Is.EqualTo(line.Length));
        Assert.That(rest, Is.EqualTo(After), "nothing after the header was read");
    }

    [TestCase("PROXY UNKNOWN\r\n")]
    [TestCase("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n")]
    public async Task V1_Unknown_NamesNobody(string line)
    {
        var (header, rest) = await ReadAsync(V1(line));

        Assert.That(header.Source, Is.Null);
        Assert.That(rest, Is.EqualTo(After));
    }

    [Test]
    public async Task V1_OfTheLongestAllowedLength_IsRead()
    {
        // The spec's worst case.
        var line = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        Assert.That(line, Has.Length.EqualTo(ProxyProtocolHeader.MaxV1Length));

        var (header, rest) = await ReadAsync(V1(line));

        Assert.That(header.Length, Is.EqualTo(ProxyProtocolHeader.MaxV1Length));
        Assert.That(rest, Is.EqualTo(After));
    }

    [Test]
    public async Task V2_Proxy_OverIPv4_NamesTheClient()
    {
        var (header, rest) = await ReadAsync(V2Ip4);

        Assert.That(header.Version, Is.EqualTo(2));
        Assert.That(header.Source, Is.EqualTo(IPEndPoint.Parse("203.0.113.7:4001")));
        Assert.That(header.Destination, Is.EqualTo(IPEndPoint.Parse("198.51.100.1:443")));
        Assert.That(rest, Is.EqualTo(After));
    }

    [Test]
    public async Task V2_Proxy_OverIPv6_NamesTheClient()
    {
        var (header, rest) = await ReadAsync(V2(0x21, 0x21, Addresses("2001:db8::7", "2001:db8::1", 4001, 443)));

        Assert.That(header.Source, Is.EqualTo(IPEndPoint.Parse("[2001:db8::7]:4001")));
        Assert.That(rest, Is.EqualTo(After));
    }

    [Test]
    public async Task V2_TlvsAfterTheAddresses_AreSkipped()
    {
        // An AWS VPC endpoint id TLV (0xEA) and a NOOP (0x04), as a load balancer would add them.
        byte[] tlvs = [0xEA, 0x00, 0x05, 0x01, (byte)'v', (byte)'p', (byte)'c', (byte)'e', 0x04, 0x00, 0x02, 0x00, 0x00];
        var header = V2(0x21, 0x11, [.. Addresses("203.0.113.7", "198.51.100.1", 4001, 443), .. tlvs]);

        var (read, rest) = await ReadAsync(header);

        Assert.That(read.Source, Is.EqualTo(IPEndPoint.Parse("203.0.113.7:4001")));
        Assert.That(read.Length, Is.EqualTo(header.Length));
        Assert.That(rest, Is.EqualTo(After));
    }

    [TestCase(0x11)]
    [TestCase(0x00)]
    [TestCase(0x31)]
    public async Task V2_Local_NamesNobody_WhateverItsBlockHolds(int family)
    {
        var (header, rest) = await ReadAsync(V2(0x20, (byte)family, Addresses("10.0.0.1", "10.0.0.2", 1, 2)));

        Assert.That(header.Source, Is.Null, "the proxy's own connection (a health check) keeps the socket's address");
        Assert.That(rest, Is.EqualTo(After));
    }

    [Test]
    public async Task V2_Proxy_WithUnspecifiedFamily_NamesNobody()
    {
        var (header, rest) = await ReadAsync(V2(0x21, 0x00, []));

        Assert.That(header.Source, Is.Null);
        Assert.That(rest, Is.EqualTo(After));
    }

    [TestCase("GET / HTTP/1.1\r\n\r\n", "does not start with a PROXY protocol header")]
    [TestCase("/multistream/1.0.0\n", "does not start with a PROXY protocol header")]
    [TestCase("PROXY TCP4 203.0.113.7 198.51.100.1 4001\r\n", "4 space-separated fields")]
    [TestCase("PROXY UDP4 203.0.113.7 198.51.100.1 4001 443\r\n", "protocol 'UDP4'")]
    [TestCase("PROXY TCP4 2001:db8::7 198.51.100.1 4001 443\r\n", "source address '2001:db8::7' is not an IPv4 address")]
    [TestCase("PROXY TCP6 203.0.113.7 2001:db8::1 4001 443\r\n", "source address '203.0.113.7' is not an IPv6 address")]
    [TestCase("PROXY TCP4 203.0.113.7 198.51.100 4001 443\r\n", "destination address '198.51.100' is not an IPv4 address")]
    [TestCase("PROXY TCP4 203.0.113.256 198.51.100.1 4001 443\r\n", "source address '203.0.113.256'")]
    [TestCase("PROXY TCP4 010.0.113.7 198.51.100.1 4001 443\r\n", "source address '010.0.113.7'")]
    [TestCase("PROXY TCP6 fe80::1%eth0 2001:db8::1 4001 443\r\n", "source address 'fe80::1%eth0'")]
    [TestCase("PROXY TCP4 203.0.113.7 198.51.100.1 65536 443\r\n", "source port '65536' is not a number from 0 to 65535")]
    [TestCase("PROXY TCP4 203.0.113.7 198.51.100.1 4001 -1\r\n", "destination port '-1'")]
    [TestCase("PROXY TCP4 203.0.113.7 198.51.100.1 04001 443\r\n", "source port '04001'")]
    [TestCase("PROXY TCP4  203.0.113.7 198.51.100.1 4001 443\r\n", "fields")]
    [TestCase("PROXY TCP4 203.0.113.7 198.51.100.1 4001 443\n", "ended after")]
    [TestCase("PROXY TCP4 203.0.113.7\t198.51.100.1 4001 443\r\n", "not printable ASCII")]
    public async Task V1_Malformed_IsRefused_SayingWhatIsWrong(string line, string reason)
    {
        var error = await RefusedAsync(V1(line));

        Assert.That(error.Message, Does.Contain(reason));
    }

    [Test]
    public async Task V1_WithoutCrlfWithinTheLimit_IsRefused_WithoutReadingFurther()
    {
        var input = V1("PROXY TCP4 " + new string('1', 200) + "\r\n");
        var stream = new ScriptedStream(input);

        var error = Assert.ThrowsAsync<ProxyProtocolException>(async () => await ProxyProtocolHeader.ReadAsync(stream, Token));

        Assert.That(error!.Message, Does.Contain($"no CRLF within {ProxyProtocolHeader.MaxV1Length} bytes"));
        Assert.That(stream.Consumed, Is.EqualTo(ProxyProtocolHeader.MaxV1Length));
    }

    [TestCase(0x11, 0x11, "version 1; expected 2")]
    [TestCase(0x22, 0x11, "command 2")]
    [TestCase(0x21, 0x12, "datagram protocol")]
    [TestCase(0x21, 0x22, "datagram protocol")]
    [TestCase(0x21, 0x31, "unix socket")]
    [TestCase(0x21, 0x41, "unknown address family and protocol 0x41")]
    [TestCase(0x21, 0x13, "unknown address family and protocol 0x13")]
    public async Task V2_UnsupportedVersionCommandOrFamily_IsRefused(int command, int family, string reason)
    {
        var error = await RefusedAsync(V2((byte)command, (byte)family, Addresses("203.0.113.7", "198.51.100.1", 4001, 443)));

        Assert.That(error.Message, Does.Contain(reason));
    }

    [TestCase(0x11, 11)]
    [TestCase(0x21, 35)]
    [TestCase(0x21, 12)]
    public async Task V2_BlockTooShortForItsFamily_IsRefused(int family, int length)
    {
        var error = await RefusedAsync(V2(0x21, (byte)family, new byte[length]));

        Assert.That(error.Message, Does.Contain($"announces {length} bytes, too few for its addresses"));
    }

    [Test]
    public async Task V2_AnnouncingMoreThanTheCap_IsRefused_BeforeReadingIt()
    {
        var header = V2(0x21, 0x11, new byte[ProxyProtocolHeader.MaxV2AddressBlockLength + 1]);
        var stream = new ScriptedStream(header);

        var error = Assert.ThrowsAsync<ProxyProtocolException>(async () => await ProxyProtocolHeader.ReadAsync(stream, Token));

        Assert.That(error!.Message, Does.Contain($"announces {ProxyProtocolHeader.MaxV2AddressBlockLength + 1} bytes"));
        Assert.That(stream.Consumed, Is.EqualTo(16));
    }

    [Test]
    public async Task V2_AtTheCap_IsRead()
    {
        var block = new byte[ProxyProtocolHeader.MaxV2AddressBlockLength];
        Addresses("203.0.113.7", "198.51.100.1", 4001, 443).CopyTo(block, 0);

        var (header, rest) = await ReadAsync(V2(0x21, 0x11, block));

        Assert.That(header.Source, Is.EqualTo(IPEndPoint.Parse("203.0.113.7:4001")));
        Assert.That(rest, Is.EqualTo(After));
    }

    private static IEnumerable<byte[]> ValidHeaders() =>
    [
        V1("PROXY TCP4 203.0.113.7 198.51.100.1 4001 443\r\n"),
        V1("PROXY TCP6 2001:db8::7 2001:db8::1 4001 443\r\n"),
        V1("PROXY UNKNOWN\r\n"),
        V2Ip4,
        V2(0x21, 0x21, Addresses("2001:db8::7", "2001:db8::1", 4001, 443)),
        V2(0x20, 0x00, []),
    ];

    [Test]
    public async Task Truncated_AtEveryLength_IsRefused_SayingWhereItEnded()
    {
        foreach (var header in ValidHeaders())
        {
            for (var length = 0; length < header.Length; length++)
            {
                var error = await RefusedAsync(header[..length]);
                Assert.That(error.Message, Does.Contain($"ended after {length} bytes"), $"{Convert.ToHexString(header)} cut at {length}");
            }
        }
    }

    [Test]
    public async Task RandomAndMutatedBytes_ReadOrFailWithATypedError()
    {
        var seed = TestSeed.Choose();
        var random = new Random(seed);
        var valid = ValidHeaders().ToArray();
        for (var i = 0; i < 3_000; i++)
        {
            byte[] input;
            switch (i % 3)
            {
                case 0:
                    input = new byte[random.Next(0, 200)];
                    random.NextBytes(input);
                    break;
                case 1:
                    // Past the signature or "PROXY ", where the parsing is.
                    var prefix = random.Next(2) == 0 ? Signature : "PROXY "u8.ToArray();
                    var tail = new byte[random.Next(0, 200)];
                    random.NextBytes(tail);
                    input = [.. prefix, .. tail];
                    break;
                default:
                    input = (byte[])valid[random.Next(valid.Length)].Clone();
                    for (var flips = random.Next(1, 4); flips > 0; flips--) input[random.Next(input.Length)] = (byte)random.Next(256);
                    break;
            }

            var stream = new ScriptedStream(input);
            try
            {
                var header = await ProxyProtocolHeader.ReadAsync(stream, Token);
                Assert.That(stream.Consumed, Is.EqualTo(header.Length), $"seed {seed}, case {i}: read past the header of {Convert.ToHexString(input)}");
            }
            catch (ProxyProtocolException)
            {
            }
            catch (Exception e)
            {
                Assert.Fail($"seed {seed}, case {i}: {e.GetType().Name} ({e.Message}) for {Convert.ToHexString(input)}");
            }
        }
    }
}
