using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Addressing;

/// <summary>One <c>/protocol/value</c> pair of a multiaddr; <see cref="Value"/> is the binary form.</summary>
public readonly record struct MultiaddressComponent(MultiaddressProtocol Protocol, ReadOnlyMemory<byte> Value)
{
    public string ValueText => Multiaddress.FormatValue(Protocol, Value.Span);
}

/// <summary>
/// A self-describing network address (multiformats multiaddr) in text and binary form:
/// ip4, ip6, tcp, udp, dns, dns4, dns6, dnsaddr, p2p, memory and a few value-less markers.
/// </summary>
public sealed class Multiaddress : IEquatable<Multiaddress>
{
    /// <summary>Longer binary or text forms are refused before parsing.</summary>
    public const int MaxLength = 1024;

    private readonly MultiaddressComponent[] _components;
    private readonly byte[] _bytes;

    private Multiaddress(MultiaddressComponent[] components)
    {
        _components = components;
        _bytes = Encode(components);
    }

    /// <summary>For components whose binary form is already at hand: varints are minimal, so it is theirs exactly.</summary>
    private Multiaddress(MultiaddressComponent[] components, byte[] bytes)
    {
        _components = components;
        _bytes = bytes;
    }

    public IReadOnlyList<MultiaddressComponent> Components => _components;

    public static Multiaddress Empty { get; } = new([]);

    /// <exception cref="FormatException">The text is not a multiaddr we understand.</exception>
    public static Multiaddress Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length > MaxLength) throw new FormatException($"multiaddr is longer than {MaxLength} characters");
        if (!text.StartsWith('/')) throw new FormatException($"multiaddr '{text}' must start with '/'");
        var parts = text.TrimEnd('/').Split('/');
        var components = new List<MultiaddressComponent>();
        for (var i = 1; i < parts.Length; i++)
        {
            if (!MultiaddressProtocol.TryGet(parts[i], out var protocol))
                throw new FormatException($"unknown multiaddr protocol '{parts[i]}' in '{text}'");
            if (protocol.Size == 0)
            {
                components.Add(new(protocol, ReadOnlyMemory<byte>.Empty));
                continue;
            }
            if (++i >= parts.Length || parts[i].Length == 0)
                throw new FormatException($"multiaddr protocol '{protocol.Name}' in '{text}' needs a value");
            components.Add(new(protocol, ParseValue(protocol, parts[i])));
        }
        return new Multiaddress(components.ToArray());
    }

    public static bool TryParse(string? text, out Multiaddress? address)
    {
        address = null;
        if (text is null) return false;
        try
        {
            address = Parse(text);
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    /// <summary><see cref="FromBytes"/> for addresses a remote sent, where one it cannot read is skipped rather than fatal.</summary>
    public static bool TryFromBytes(ReadOnlySpan<byte> bytes, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Multiaddress? address)
    {
        try
        {
            address = FromBytes(bytes);
            return true;
        }
        catch (FormatException)
        {
            address = null;
            return false;
        }
    }

    /// <exception cref="FormatException">Truncated, oversized or unknown components.</exception>
    public static Multiaddress FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > MaxLength) throw new FormatException($"multiaddr is longer than {MaxLength} bytes");
        // Checked in full first, to size the component array exactly; the values are then slices of
        // one copy, which is also the binary form (varints are minimal): every kad reply carries
        // dozens of addresses, and a list, an array per value and a re-encoding each were a measurable
        // share of the DHT simulation's allocations.
        var count = 0;
        for (var offset = 0; offset < bytes.Length; count++)
            offset = ReadComponent(bytes, offset, validate: true, out _, out _);
        if (count == 0) return Empty;
        var copy = bytes.ToArray();
        var components = new MultiaddressComponent[count];
        for (int offset = 0, i = 0; i < count; i++)
        {
            var end = ReadComponent(bytes, offset, validate: false, out var protocol, out var valueStart);
            components[i] = new(protocol, copy.AsMemory(valueStart, end - valueStart));
            offset = end;
        }
        return new Multiaddress(components, copy);
    }

    /// <summary>Reads the component at <paramref name="offset"/>; returns where it ends.</summary>
    private static int ReadComponent(ReadOnlySpan<byte> bytes, int offset, bool validate, out MultiaddressProtocol protocol, out int valueStart)
    {
        var code = Varint.Read(bytes[offset..], out var n);
        offset += n;
        if (code > int.MaxValue || !MultiaddressProtocol.TryGet((int)code, out var found))
            throw new FormatException($"unknown multiaddr protocol code {code}");
        protocol = found;
        int length;
        if (protocol.Size == MultiaddressProtocol.Variable)
        {
            var declared = Varint.Read(bytes[offset..], out n);
            offset += n;
            if (declared > (ulong)(bytes.Length - offset))
                throw new FormatException($"multiaddr component '{protocol.Name}' is truncated");
            length = (int)declared;
        }
        else
        {
            length = protocol.Size / 8;
            if (length > bytes.Length - offset)
                throw new FormatException($"multiaddr component '{protocol.Name}' is truncated");
        }
        if (validate) ValidateValue(protocol, bytes.Slice(offset, length));
        valueStart = offset;
        return offset + length;
    }

    public ReadOnlySpan<byte> Bytes => _bytes;

    /// <summary>The binary form as memory, for wrapping without a copy in a message being sent (it never changes).</summary>
    internal ReadOnlyMemory<byte> BytesMemory => _bytes;

    public byte[] ToByteArray() => (byte[])_bytes.Clone();

    /// <summary>The text form; the empty address prints as "/" so that it parses back.</summary>
    public override string ToString()
    {
        if (_components.Length == 0) return "/";
        var sb = new StringBuilder();
        foreach (var c in _components)
        {
            sb.Append('/').Append(c.Protocol.Name);
            if (c.Protocol.Size != 0) sb.Append('/').Append(c.ValueText);
        }
        return sb.ToString();
    }

    public Multiaddress Encapsulate(Multiaddress inner) => new([.. _components, .. inner._components]);

    /// <summary>Removes the last component of <paramref name="protocol"/> and everything after it.</summary>
    public Multiaddress Decapsulate(MultiaddressProtocol protocol)
    {
        for (var i = _components.Length - 1; i >= 0; i--)
            if (_components[i].Protocol.Code == protocol.Code)
                return new Multiaddress(_components[..i]);
        return this;
    }

    // A loop, not Any with a closure: the host asks this of a connection's address whenever it picks a
    // connection (is it relayed?), which a kad reply does for each of the k peers it names.
    public bool Has(MultiaddressProtocol protocol)
    {
        foreach (var c in _components)
            if (c.Protocol.Code == protocol.Code) return true;
        return false;
    }

    public string? ValueOf(MultiaddressProtocol protocol)
    {
        foreach (var c in _components)
            if (c.Protocol.Code == protocol.Code) return c.ValueText;
        return null;
    }

    /// <summary>
    /// The PeerId of a trailing <c>/p2p/…</c>, if any. Only the last component counts: in a relay's
    /// circuit address (<c>…/p2p/RELAY/p2p-circuit</c>) the <c>/p2p/</c> names the relay, not the peer.
    /// </summary>
    public PeerId? PeerId =>
        _components.Length > 0 && _components[^1].Protocol.Code == MultiaddressProtocol.P2p.Code
            ? Identity.PeerId.FromBytes(_components[^1].Value.Span)
            : null;

    /// <summary>This address without its trailing <c>/p2p/…</c> (see <see cref="PeerId"/>).</summary>
    public Multiaddress WithoutPeerId() =>
        _components.Length > 0 && _components[^1].Protocol.Code == MultiaddressProtocol.P2p.Code
            // The binary form of leading components is a prefix of the whole: no re-encoding.
            ? new Multiaddress(_components[..^1], _bytes[..(_bytes.Length - EncodedLength(_components[^1]))])
            : this;

    public Multiaddress WithPeerId(PeerId peerId) =>
        WithoutPeerId().Encapsulate(new Multiaddress([new(MultiaddressProtocol.P2p, peerId.ToByteArray())]));

    /// <summary>Whether the host is unspecified (<c>/ip4/0.0.0.0</c>, <c>/ip6/::</c>): bound to every address of the machine, and dialable by nobody.</summary>
    public bool HasUnspecifiedHost =>
        _components.Length > 0 && (_components[0].Protocol.Code == MultiaddressProtocol.Ip4.Code || _components[0].Protocol.Code == MultiaddressProtocol.Ip6.Code)
        && !_components[0].Value.Span.ContainsAnyExcept((byte)0);

    /// <summary>This address with its first component (the host) replaced by <paramref name="ip"/>, as <c>/ip4</c> or <c>/ip6</c>.</summary>
    public Multiaddress WithHost(IPAddress ip)
    {
        ArgumentNullException.ThrowIfNull(ip);
        if (ip.IsIPv4MappedToIPv6) ip = ip.MapToIPv4();
        var host = new MultiaddressComponent(ip.AddressFamily == AddressFamily.InterNetworkV6 ? MultiaddressProtocol.Ip6 : MultiaddressProtocol.Ip4, ip.GetAddressBytes());
        return new Multiaddress([host, .. _components.AsSpan(Math.Min(1, _components.Length))]);
    }

    public static Multiaddress FromIPEndPoint(IPEndPoint endpoint)
    {
        var ip = endpoint.Address.IsIPv4MappedToIPv6 ? endpoint.Address.MapToIPv4() : endpoint.Address;
        var ipProtocol = ip.AddressFamily == AddressFamily.InterNetworkV6 ? MultiaddressProtocol.Ip6 : MultiaddressProtocol.Ip4;
        var port = new byte[2];
        BinaryPrimitives.WriteUInt16BigEndian(port, (ushort)endpoint.Port);
        return new Multiaddress([new(ipProtocol, ip.GetAddressBytes()), new(MultiaddressProtocol.Tcp, port)]);
    }

    public static Multiaddress Memory(string name) =>
        new([new(MultiaddressProtocol.Memory, System.Text.Encoding.UTF8.GetBytes(name))]);

    /// <summary>The host and TCP port of an <c>/ip4|ip6|dns*/…/tcp/N</c> address; null when it has none.</summary>
    public (string Host, int Port)? TcpHostPort()
    {
        if (_components.Length < 2) return null;
        var first = _components[0];
        var second = _components[1];
        if (second.Protocol.Code != MultiaddressProtocol.Tcp.Code) return null;
        var port = BinaryPrimitives.ReadUInt16BigEndian(second.Value.Span);
        return first.Protocol.Name switch
        {
            "ip4" or "ip6" or "dns" or "dns4" or "dns6" => (first.ValueText, port),
            _ => null,
        };
    }

    public bool Equals(Multiaddress? other) => other is not null && _bytes.AsSpan().SequenceEqual(other._bytes);
    public override bool Equals(object? obj) => Equals(obj as Multiaddress);
    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.AddBytes(_bytes);
        return hash.ToHashCode();
    }
    public static bool operator ==(Multiaddress? a, Multiaddress? b) => a is null ? b is null : a.Equals(b);
    public static bool operator !=(Multiaddress? a, Multiaddress? b) => !(a == b);

    private static byte[] Encode(MultiaddressComponent[] components)
    {
        var length = 0;
        foreach (var c in components) length += EncodedLength(c);
        var buffer = new byte[length];
        var offset = 0;
        foreach (var c in components)
        {
            offset += Varint.Write(buffer.AsSpan(offset), (ulong)c.Protocol.Code);
            if (c.Protocol.Size == MultiaddressProtocol.Variable)
                offset += Varint.Write(buffer.AsSpan(offset), (ulong)c.Value.Length);
            c.Value.Span.CopyTo(buffer.AsSpan(offset));
            offset += c.Value.Length;
        }
        return buffer;
    }

    private static int EncodedLength(MultiaddressComponent component) =>
        Varint.GetLength((ulong)component.Protocol.Code)
        + (component.Protocol.Size == MultiaddressProtocol.Variable ? Varint.GetLength((ulong)component.Value.Length) : 0)
        + component.Value.Length;

    private static byte[] ParseValue(MultiaddressProtocol protocol, string text)
    {
        switch (protocol.Name)
        {
            case "ip4":
                return ParseIp4(text);
            case "ip6":
                // IPAddress.TryParse also takes "[::1]" and "fe80::1%eth0"; a zone belongs in /ip6zone.
                if (text.Contains('%') || text.Contains('[') || text.Contains(']')
                    || !IPAddress.TryParse(text, out var ip6) || ip6.AddressFamily != AddressFamily.InterNetworkV6)
                    throw new FormatException($"'{text}' is not an IPv6 address");
                return ip6.GetAddressBytes();
            case "tcp" or "udp":
                if (!ushort.TryParse(text, System.Globalization.NumberStyles.None, null, out var port))
                    throw new FormatException($"'{text}' is not a port number (0-65535)");
                var bytes = new byte[2];
                BinaryPrimitives.WriteUInt16BigEndian(bytes, port);
                return bytes;
            case "p2p":
                return Identity.PeerId.Parse(text).ToByteArray();
            default:
                var utf8 = System.Text.Encoding.UTF8.GetBytes(text);
                ValidateValue(protocol, utf8);
                return utf8;
        }
    }

    /// <summary>
    /// Only the dotted-quad form: IPAddress.TryParse also reads "127.1", "2130706433" and octal or
    /// hex parts, which other multiaddr implementations refuse.
    /// </summary>
    private static byte[] ParseIp4(string text)
    {
        var parts = text.Split('.');
        var bytes = new byte[4];
        if (parts.Length != 4) throw new FormatException($"'{text}' is not an IPv4 address");
        for (var i = 0; i < 4; i++)
        {
            var part = parts[i];
            if (part.Length is 0 or > 3 || (part.Length > 1 && part[0] == '0')
                || !byte.TryParse(part, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out bytes[i]))
                throw new FormatException($"'{text}' is not an IPv4 address");
        }
        return bytes;
    }

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static void ValidateValue(MultiaddressProtocol protocol, ReadOnlySpan<byte> value)
    {
        switch (protocol.Name)
        {
            case "p2p":
                Identity.PeerId.Validate(value);
                break;
            case "dns" or "dns4" or "dns6" or "dnsaddr" or "memory":
                if (value.Length == 0) throw new FormatException($"multiaddr '{protocol.Name}' value is empty");
                if (value.Contains((byte)'/')) throw new FormatException($"multiaddr '{protocol.Name}' value contains '/'");
                // Text and binary must round-trip: invalid UTF-8 would come back as U+FFFD.
                try
                {
                    StrictUtf8.GetCharCount(value);
                }
                catch (DecoderFallbackException e)
                {
                    throw new FormatException($"multiaddr '{protocol.Name}' value is not valid UTF-8", e);
                }
                break;
        }
    }

    internal static string FormatValue(MultiaddressProtocol protocol, ReadOnlySpan<byte> value) => protocol.Name switch
    {
        "ip4" or "ip6" => new IPAddress(value).ToString(),
        "tcp" or "udp" => BinaryPrimitives.ReadUInt16BigEndian(value).ToString(System.Globalization.CultureInfo.InvariantCulture),
        "p2p" => Base58.Encode(value),
        _ when protocol.Size == 0 => "",
        _ => System.Text.Encoding.UTF8.GetString(value),
    };
}
