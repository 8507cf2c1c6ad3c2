using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;

namespace P2PInference.Facilities.Net.Protocols.Dcutr;

/// <summary>
/// DCUtR (<c>/libp2p/dcutr</c>) messages on a stream, each framed by an unsigned-varint length.
/// </summary>
/// <remarks>
/// Errors: bytes that are not a protobuf <c>HolePunch</c> are a <see cref="MalformedMessageException"/>,
/// a prefix above <see cref="MaxMessageLength"/> a <see cref="MessageTooLargeException"/> (before
/// allocating), a stream that ends before or inside the message an <see cref="EndOfStreamException"/>,
/// and a message of a missing, undefined or unexpected type a <see cref="DcutrException"/>. All are
/// <see cref="IOException"/>s. Addresses we cannot parse are skipped, as they are normal in a mixed network.
/// </remarks>
public static class HolePunchMessageCodec
{
    public const string ProtocolId = "/libp2p/dcutr";

    /// <summary>The spec says to refuse larger messages (go- and js-libp2p do); we never send more.</summary>
    public const int MaxMessageLength = 4096;

    /// <exception cref="ArgumentException">The message would exceed <see cref="MaxMessageLength"/>.</exception>
    public static async ValueTask WriteAsync(Stream stream, HolePunchMessage message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(message);
        var proto = new Proto.HolePunch { Type = (Proto.HolePunch.Types.Type)message.Type };
        foreach (var address in message.Addresses) proto.ObsAddrs.Add(ByteString.CopyFrom(address.Bytes));
        var size = proto.CalculateSize();
        if (size > MaxMessageLength)
            throw new ArgumentException($"DCUtR message of {size} bytes exceeds {MaxMessageLength}, which other implementations refuse");
        await LengthPrefixedMessage.WriteAsync(stream, proto, cancellationToken);
    }

    /// <summary>Reads one message, which must be of type <paramref name="expected"/>.</summary>
    /// <exception cref="DcutrException">Another or an undefined type.</exception>
    /// <exception cref="EndOfStreamException">The stream ended before or inside the message.</exception>
    public static async ValueTask<HolePunchMessage> ReadAsync(Stream stream, HolePunchMessageType expected, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var proto = await LengthPrefixedMessage.ReadAsync(stream, Proto.HolePunch.Parser, MaxMessageLength, cancellationToken)
            ?? throw new EndOfStreamException("the stream ended before a DCUtR message");
        var message = FromProto(proto);
        if (message.Type != expected) throw new DcutrException($"expected {expected}, got {message.Type}");
        return message;
    }

    /// <summary>Decodes a message body (no prefix).</summary>
    /// <exception cref="MalformedMessageException">Not a protobuf <c>HolePunch</c>.</exception>
    /// <exception cref="DcutrException">A missing or undefined type.</exception>
    public static HolePunchMessage Parse(ReadOnlySpan<byte> body) => FromProto(LengthPrefixedMessage.Parse(Proto.HolePunch.Parser, body));

    private static HolePunchMessage FromProto(Proto.HolePunch proto)
    {
        if (!proto.HasType) throw new DcutrException("a message without a type");
        var type = (HolePunchMessageType)proto.Type;
        if (!Enum.IsDefined(type)) throw new DcutrException($"undefined message type {(int)proto.Type}");
        var addresses = new List<Multiaddress>(proto.ObsAddrs.Count);
        foreach (var bytes in proto.ObsAddrs)
        {
            if (Multiaddress.TryFromBytes(bytes.Span, out var address)) addresses.Add(address);
        }
        return new HolePunchMessage(type, addresses);
    }
}
