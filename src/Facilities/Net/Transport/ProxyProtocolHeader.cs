using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace P2PInference.Facilities.Net.Transport;

/// <summary>
/// The PROXY protocol header (version 1 or 2) a TCP load balancer puts before a connection's own bytes
/// to name the client it stands in for (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
/// Only TCP over IPv4 or IPv6 names a client; LOCAL (the proxy's own health check), UNKNOWN and UNSPEC
/// name none. Version 2's TLVs are skipped.
/// </summary>
public sealed class ProxyProtocolHeader
{
    /// <summary>A version 1 header is at most this long, CRLF included (the spec's bound).</summary>
    public const int MaxV1Length = 107;

    /// <summary>
    /// The longest version 2 address block (addresses and TLVs) accepted. The spec allows 65,535 bytes;
    /// load balancers send the addresses and a few short TLVs (AWS, Azure and GCP's ids, HAProxy's SSL
    /// and authority ones), far less than this.
    /// </summary>
    public const int MaxV2AddressBlockLength = 1024;

    private const int V2FixedLength = 16;
    // Both versions' headers are at least this long ("PROXY UNKNOWN\r\n" is 15 bytes), so reading it never takes a byte past the header.
    private const int PrefixLength = 12;

    private static ReadOnlySpan<byte> V2Signature => [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    private static ReadOnlySpan<byte> V1Prefix => "PROXY "u8;

    private ProxyProtocolHeader(int version, IPEndPoint? source, IPEndPoint? destination, int length)
    {
        Version = version;
        Source = source;
        Destination = destination;
        Length = length;
    }

    /// <summary>1 or 2.</summary>
    public int Version { get; }

    /// <summary>The client the proxy connected for; null when the header names none (LOCAL, UNKNOWN, UNSPEC): the socket's own address stands.</summary>
    public IPEndPoint? Source { get; }

    /// <summary>The address the client connected to (the proxy's), when the header names a client.</summary>
    public IPEndPoint? Destination { get; }

    /// <summary>How many bytes the header took.</summary>
    public int Length { get; }

    /// <summary>
    /// Reads one header from the start of <paramref name="stream"/>, and not a byte more: what follows is the connection's own.
    /// </summary>
    /// <exception cref="ProxyProtocolException">The stream does not start with a valid header, or ends inside it.</exception>
    /// <exception cref="IOException">The stream failed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired.</exception>
    public static async ValueTask<ProxyProtocolHeader> ReadAsync(Stream stream, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var prefix = new byte[PrefixLength];
        await FillAsync(stream, prefix, 0, cancellationToken);
        if (prefix.AsSpan().SequenceEqual(V2Signature)) return await ReadV2Async(stream, cancellationToken);
        if (prefix.AsSpan().StartsWith(V1Prefix)) return await ReadV1Async(stream, prefix, cancellationToken);
        throw new ProxyProtocolException("the connection does not start with a PROXY protocol header (neither \"PROXY \" nor the version 2 signature)");
    }

    private static async ValueTask<ProxyProtocolHeader> ReadV1Async(Stream stream, byte[] prefix, CancellationToken cancellationToken)
    {
        var line = new byte[MaxV1Length];
        prefix.CopyTo(line, 0);
        var length = prefix.Length;
        // Byte by byte: a read of more could take the connection's first bytes, and the header's length shows only at its end.
        while (!line.AsSpan(0, length).EndsWith("\r\n"u8))
        {
            if (length == MaxV1Length)
                throw new ProxyProtocolException($"the PROXY protocol version 1 header has no CRLF within {MaxV1Length} bytes");
            await FillAsync(stream, line, length, cancellationToken, count: 1);
            length++;
        }
        var (source, destination) = ParseV1(line.AsSpan(V1Prefix.Length, length - V1Prefix.Length - 2));
        return new ProxyProtocolHeader(1, source, destination, length);
    }

    private static (IPEndPoint? Source, IPEndPoint? Destination) ParseV1(ReadOnlySpan<byte> fields)
    {
        if (fields.IndexOfAnyExceptInRange((byte)0x20, (byte)0x7E) >= 0)
            throw new ProxyProtocolException("the PROXY protocol version 1 header holds a byte that is not printable ASCII");
        var text = System.Text.Encoding.ASCII.GetString(fields);
        // UNKNOWN may be followed by anything (the spec says to ignore it): the proxy could not tell the client.
        if (text == "UNKNOWN" || text.StartsWith("UNKNOWN ", StringComparison.Ordinal)) return (null, null);
        var parts = text.Split(' ');
        if (parts.Length != 5)
            throw new ProxyProtocolException($"the PROXY protocol version 1 header has {parts.Length} space-separated fields after \"PROXY\"; expected 5 (protocol, two addresses, two ports)");
        var family = parts[0] switch
        {
            "TCP4" => AddressFamily.InterNetwork,
            "TCP6" => AddressFamily.InterNetworkV6,
            _ => throw new ProxyProtocolException($"the PROXY protocol version 1 header names protocol '{Shorten(parts[0])}'; expected TCP4, TCP6 or UNKNOWN"),
        };
        var source = ParseV1Address(parts[1], family, "source");
        var destination = ParseV1Address(parts[2], family, "destination");
        return (new IPEndPoint(source, ParseV1Port(parts[3], "source")), new IPEndPoint(destination, ParseV1Port(parts[4], "destination")));
    }

    private static IPAddress ParseV1Address(string text, AddressFamily family, string which)
    {
        var valid = family == AddressFamily.InterNetwork ? IsDottedQuad(text) : IsIPv6Text(text);
        if (!valid || !IPAddress.TryParse(text, out var address) || address.AddressFamily != family)
        {
            throw new ProxyProtocolException(
                $"the PROXY protocol version 1 header's {which} address '{Shorten(text)}' is not an {(family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address");
        }
        return Unmapped(address);
    }

    // IPAddress.TryParse also takes "1", "0x7f.1" and "010.0.0.1"; the spec's form is four decimal bytes, as inet_pton reads them.
    private static bool IsDottedQuad(string text)
    {
        var parts = text.Split('.');
        return parts.Length == 4 && parts.All(p => IsDecimal(p, maxDigits: 3) && int.Parse(p, CultureInfo.InvariantCulture) <= 255);
    }

    // Hex groups, colons and a trailing dotted quad only: no zone ("%eth0"), brackets or port.
    private static bool IsIPv6Text(string text) =>
        text.Length is > 1 and <= 45 && text.All(c => char.IsAsciiHexDigit(c) || c is ':' or '.') && text.Contains(':', StringComparison.Ordinal);

    private static int ParseV1Port(string text, string which)
    {
        if (!IsDecimal(text, maxDigits: 5) || int.Parse(text, CultureInfo.InvariantCulture) is not (var port and <= 65535))
            throw new ProxyProtocolException($"the PROXY protocol version 1 header's {which} port '{Shorten(text)}' is not a number from 0 to 65535");
        return port;
    }

    // Leading zeros are refused, as the spec's reference parser does: "0" alone is zero.
    private static bool IsDecimal(string text, int maxDigits) =>
        text.Length is > 0 && text.Length <= maxDigits && text.All(char.IsAsciiDigit) && (text.Length == 1 || text[0] != '0');

    private static async ValueTask<ProxyProtocolHeader> ReadV2Async(Stream stream, CancellationToken cancellationToken)
    {
        var fixedPart = new byte[V2FixedLength];
        V2Signature.CopyTo(fixedPart);
        await FillAsync(stream, fixedPart, PrefixLength, cancellationToken);
        var versionAndCommand = fixedPart[12];
        var familyAndProtocol = fixedPart[13];
        var blockLength = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(14));
        if (versionAndCommand >> 4 != 2)
            throw new ProxyProtocolException($"the PROXY protocol version 2 header says version {versionAndCommand >> 4}; expected 2");
        var command = versionAndCommand & 0x0F;
        if (command > 1)
            throw new ProxyProtocolException($"the PROXY protocol version 2 header has command {command}; expected 0 (LOCAL) or 1 (PROXY)");
        if (blockLength > MaxV2AddressBlockLength)
            throw new ProxyProtocolException($"the PROXY protocol version 2 header announces {blockLength} bytes of addresses and TLVs; at most {MaxV2AddressBlockLength} are accepted");
        // LOCAL is the proxy speaking for itself (a health check): whatever its block holds, the socket's address stands.
        var addressLength = command == 0 ? 0 : familyAndProtocol switch
        {
            0x00 => 0,
            0x11 => 12,
            0x21 => 36,
            0x12 or 0x22 or 0x32 => throw new ProxyProtocolException(
                $"the PROXY protocol version 2 header is for a datagram protocol (0x{familyAndProtocol:X2}); a TCP listener takes only TCP (0x11, 0x21)"),
            0x31 => throw new ProxyProtocolException("the PROXY protocol version 2 header names a unix socket (0x31); a TCP listener takes only TCP over IPv4 or IPv6"),
            _ => throw new ProxyProtocolException($"the PROXY protocol version 2 header has an unknown address family and protocol 0x{familyAndProtocol:X2}"),
        };
        if (blockLength < addressLength)
            throw new ProxyProtocolException($"the PROXY protocol version 2 header announces {blockLength} bytes, too few for its addresses ({addressLength})");
        var block = new byte[blockLength];
        await FillAsync(stream, block, 0, cancellationToken, headerBytesBefore: V2FixedLength);
        var length = V2FixedLength + blockLength;
        if (addressLength == 0) return new ProxyProtocolHeader(2, null, null, length);
        var addressBytes = addressLength == 12 ? 4 : 16;
        var span = block.AsSpan();
        var source = new IPEndPoint(Unmapped(new IPAddress(span[..addressBytes])), BinaryPrimitives.ReadUInt16BigEndian(span[(2 * addressBytes)..]));
        var destination = new IPEndPoint(Unmapped(new IPAddress(span.Slice(addressBytes, addressBytes))), BinaryPrimitives.ReadUInt16BigEndian(span[(2 * addressBytes + 2)..]));
        return new ProxyProtocolHeader(2, source, destination, length);
    }

    // A dual-stack proxy names IPv4 clients as ::ffff:a.b.c.d; as such they would all share one IPv6 /64 in the per-address cap.
    private static IPAddress Unmapped(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    /// <param name="headerBytesBefore">How much of the header came before <paramref name="buffer"/>'s first byte, for the message.</param>
    private static async ValueTask FillAsync(Stream stream, byte[] buffer, int offset, CancellationToken cancellationToken, int? count = null,
        int headerBytesBefore = 0)
    {
        var end = offset + (count ?? buffer.Length - offset);
        while (offset < end)
        {
            var read = await stream.ReadAsync(buffer.AsMemory(offset, end - offset), cancellationToken);
            if (read == 0)
                throw new ProxyProtocolException($"the connection ended after {headerBytesBefore + offset} bytes, inside its PROXY protocol header");
            offset += read;
        }
    }

    private static string Shorten(string text) => text.Length <= 40 ? text : text[..40] + "…";
}
