using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Dht.Proto;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// Reads and writes kad messages (uvarint length prefix, protobuf <see cref="Message"/> body) and
/// converts the <c>Peer</c> entries they carry. Untrusted input is bounded before it is allocated.
/// </summary>
public static class KadMessageCodec
{
    /// <summary>Reads one message; null when the stream ends cleanly before it.</summary>
    /// <exception cref="MessageTooLargeException">The prefix announces more than <paramref name="maxMessageSize"/>.</exception>
    /// <exception cref="MalformedMessageException">The prefix or the protobuf is malformed.</exception>
    /// <exception cref="KadProtocolException">The message has an unknown type or an oversized key.</exception>
    /// <exception cref="EndOfStreamException">The stream ended inside the message.</exception>
    public static async ValueTask<Message?> ReadAsync(Stream stream, int maxMessageSize, int maxKeySize, CancellationToken cancellationToken)
    {
        var message = await LengthPrefixedMessage.ReadAsync(stream, Message.Parser, maxMessageSize, cancellationToken);
        if (message is not null) Validate(message, maxKeySize);
        return message;
    }

    /// <summary>Parses one message body (no length prefix) and validates it like <see cref="ReadAsync"/>.</summary>
    public static Message Parse(ReadOnlySpan<byte> body, int maxKeySize)
    {
        var message = LengthPrefixedMessage.Parse(Message.Parser, body);
        Validate(message, maxKeySize);
        return message;
    }

    public static ValueTask WriteAsync(Stream stream, Message message, CancellationToken cancellationToken) =>
        LengthPrefixedMessage.WriteAsync(stream, message, cancellationToken);

    /// <summary>Converts a wire peer; null when its id is not a valid PeerId. Unparseable addresses are skipped.</summary>
    public static DiscoveredPeer? ToPeer(Message.Types.Peer peer, int maxAddresses)
    {
        ArgumentNullException.ThrowIfNull(peer);
        var id = TryPeerId(peer.Id.Span);
        if (id is null) return null;
        var addresses = new List<Multiaddress>(Math.Min(peer.Addrs.Count, maxAddresses));
        foreach (var bytes in peer.Addrs)
        {
            if (addresses.Count >= maxAddresses) break;
            TryAddAddress(addresses, bytes.Span, id);
        }
        return new DiscoveredPeer(id, addresses);
    }

    /// <summary><see cref="ToPeer(Message.Types.Peer, int)"/> of a closer peer still in its reply's bytes.</summary>
    internal static DiscoveredPeer? ToPeer(in KadWirePeer peer, int maxAddresses)
    {
        var id = TryPeerId(peer.Id);
        if (id is null) return null;
        var addresses = new List<Multiaddress>(Math.Min(peer.AddressCount, maxAddresses));
        for (var i = 0; i < peer.AddressCount && addresses.Count < maxAddresses; i++) TryAddAddress(addresses, peer.Address(i), id);
        return new DiscoveredPeer(id, addresses);
    }

    private static PeerId? TryPeerId(ReadOnlySpan<byte> bytes)
    {
        try
        {
            return PeerId.FromBytes(bytes);
        }
        catch (Exception e) when (e is FormatException or ArgumentException)
        {
            return null;
        }
    }

    private static void TryAddAddress(List<Multiaddress> addresses, ReadOnlySpan<byte> bytes, PeerId id)
    {
        try
        {
            var address = Multiaddress.FromBytes(bytes);
            // A /p2p suffix naming someone else would make us dial the wrong peer.
            var named = address.PeerId;
            if (named is not null && named != id) return;
            address = address.WithoutPeerId();
            if (address.Components.Count > 0) addresses.Add(address);
        }
        catch (Exception e) when (e is FormatException or ArgumentException)
        {
        }
    }

    public static Message.Types.Peer FromPeer(PeerId peer, IEnumerable<Multiaddress> addresses, bool connected)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        var wire = NewPeer(peer, connected);
        foreach (var address in addresses) wire.Addrs.Add(UnsafeByteOperations.UnsafeWrap(address.BytesMemory));
        return wire;
    }

    /// <summary>
    /// <see cref="FromPeer(PeerId, IEnumerable{Multiaddress}, bool)"/> with at most <paramref name="maxAddresses"/>
    /// of a list, without the enumerator and Take iterator: a reply names k peers, and this runs for each.
    /// </summary>
    public static Message.Types.Peer FromPeer(PeerId peer, IReadOnlyList<Multiaddress> addresses, int maxAddresses, bool connected)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        var wire = NewPeer(peer, connected);
        var count = Math.Min(addresses.Count, maxAddresses);
        // Sized once: the field would grow to eight slots for the one or two addresses a peer has.
        wire.Addrs.Capacity = count;
        for (var i = 0; i < count; i++) wire.Addrs.Add(UnsafeByteOperations.UnsafeWrap(addresses[i].BytesMemory));
        return wire;
    }

    private static Message.Types.Peer NewPeer(PeerId peer, bool connected)
    {
        ArgumentNullException.ThrowIfNull(peer);
        return new Message.Types.Peer
        {
            // Wrapped, not copied: PeerId and Multiaddress bytes never change, and a reply names k peers.
            Id = UnsafeByteOperations.UnsafeWrap(peer.BytesMemory),
            Connection = connected ? Message.Types.ConnectionType.Connected : Message.Types.ConnectionType.NotConnected,
        };
    }

    internal static void Validate(Message message, int maxKeySize)
    {
        if (!Enum.IsDefined(message.Type))
            throw new KadProtocolException($"unknown message type {(int)message.Type}");
        if (message.Key.Length > maxKeySize)
            throw new KadProtocolException($"key of {message.Key.Length} bytes exceeds {maxKeySize}");
    }
}
