using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Protocols.AutoNat.Proto;

namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>
/// AutoNAT v1 (<c>/libp2p/autonat/1.0.0</c>) messages on a stream: the requester writes one
/// length-prefixed DIAL, the server answers one DIAL_RESPONSE.
/// </summary>
/// <remarks>
/// Errors: bytes that are not a protobuf <c>Message</c> are a <see cref="MalformedMessageException"/>,
/// a prefix above the limit a <see cref="MessageTooLargeException"/> (before allocating), a stream
/// that ends inside or before the message an <see cref="EndOfStreamException"/>, and a message that
/// decodes but is not what the protocol allows an <see cref="AutoNatException"/>. All are
/// <see cref="IOException"/>s.
/// </remarks>
public static class AutoNatMessageCodec
{
    public const string ProtocolId = "/libp2p/autonat/1.0.0";

    /// <summary>js-libp2p resets an AutoNAT stream whose message is larger, so we neither send nor accept more.</summary>
    public const int MaxMessageLength = 8 * 1024;

    /// <exception cref="ArgumentException">The message would exceed <see cref="MaxMessageLength"/>.</exception>
    public static ValueTask WriteRequestAsync(Stream stream, AutoNatDialRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(request);
        var peer = new Message.Types.PeerInfo { Id = ByteString.CopyFrom(request.Peer.Bytes) };
        foreach (var address in request.Addresses)
            peer.Addrs.Add(ByteString.CopyFrom(address.Bytes));
        return WriteAsync(stream, new Message
        {
            Type = Message.Types.MessageType.Dial,
            Dial = new Message.Types.Dial { Peer = peer },
        }, cancellationToken);
    }

    /// <exception cref="ArgumentException">The message would exceed <see cref="MaxMessageLength"/>.</exception>
    public static ValueTask WriteResponseAsync(Stream stream, AutoNatDialResponse response, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(response);
        var dialResponse = new Message.Types.DialResponse { Status = (Message.Types.ResponseStatus)response.Status };
        if (response.StatusText.Length > 0) dialResponse.StatusText = response.StatusText;
        if (response.Address is not null) dialResponse.Addr = ByteString.CopyFrom(response.Address.Bytes);
        return WriteAsync(stream, new Message { Type = Message.Types.MessageType.DialResponse, DialResponse = dialResponse }, cancellationToken);
    }

    /// <summary>Reads one DIAL message.</summary>
    /// <exception cref="AutoNatException">Not a DIAL, no peer in it, or its peer id is malformed.</exception>
    /// <exception cref="EndOfStreamException">The stream ended before or inside the message.</exception>
    public static async ValueTask<AutoNatDialRequest> ReadRequestAsync(Stream stream, int maxLength, CancellationToken cancellationToken) =>
        ToRequest(await ReadAsync(stream, maxLength, cancellationToken));

    /// <summary>Reads one DIAL_RESPONSE message.</summary>
    /// <exception cref="AutoNatException">Not a DIAL_RESPONSE, no response in it, or a status the protocol does not define.</exception>
    /// <exception cref="EndOfStreamException">The stream ended before or inside the message.</exception>
    public static async ValueTask<AutoNatDialResponse> ReadResponseAsync(Stream stream, int maxLength, CancellationToken cancellationToken) =>
        ToResponse(await ReadAsync(stream, maxLength, cancellationToken));

    /// <summary>Decodes a DIAL body (no prefix).</summary>
    /// <exception cref="MalformedMessageException">Not a protobuf <c>Message</c>.</exception>
    /// <exception cref="AutoNatException">Not a valid DIAL.</exception>
    public static AutoNatDialRequest ParseRequest(ReadOnlySpan<byte> body) => ToRequest(LengthPrefixedMessage.Parse(Message.Parser, body));

    /// <summary>Decodes a DIAL_RESPONSE body (no prefix).</summary>
    /// <exception cref="MalformedMessageException">Not a protobuf <c>Message</c>.</exception>
    /// <exception cref="AutoNatException">Not a valid DIAL_RESPONSE.</exception>
    public static AutoNatDialResponse ParseResponse(ReadOnlySpan<byte> body) => ToResponse(LengthPrefixedMessage.Parse(Message.Parser, body));

    private static async ValueTask WriteAsync(Stream stream, Message message, CancellationToken cancellationToken)
    {
        var size = message.CalculateSize();
        if (size > MaxMessageLength)
            throw new ArgumentException($"AutoNAT message of {size} bytes exceeds {MaxMessageLength}, which js-libp2p refuses");
        await LengthPrefixedMessage.WriteAsync(stream, message, cancellationToken);
    }

    private static async ValueTask<Message> ReadAsync(Stream stream, int maxLength, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        return await LengthPrefixedMessage.ReadAsync(stream, Message.Parser, maxLength, cancellationToken)
            ?? throw new EndOfStreamException("the stream ended before an AutoNAT message");
    }

    private static AutoNatDialRequest ToRequest(Message message)
    {
        if (message.Type != Message.Types.MessageType.Dial)
            throw new AutoNatException($"expected a DIAL message, got {Describe(message)}");
        if (message.Dial?.Peer is not { HasId: true } peer)
            throw new AutoNatException("the DIAL message names no peer");
        PeerId id;
        try
        {
            id = PeerId.FromBytes(peer.Id.Span);
        }
        catch (FormatException e)
        {
            throw new AutoNatException("the DIAL message's peer id is malformed: " + e.Message, e);
        }
        var addresses = new List<Multiaddress>(peer.Addrs.Count);
        foreach (var bytes in peer.Addrs)
        {
            // Transports we do not know are normal in a mixed network; they are simply not dialled.
            if (Multiaddress.TryFromBytes(bytes.Span, out var address)) addresses.Add(address);
        }
        return new AutoNatDialRequest(id, addresses);
    }

    private static AutoNatDialResponse ToResponse(Message message)
    {
        if (message.Type != Message.Types.MessageType.DialResponse)
            throw new AutoNatException($"expected a DIAL_RESPONSE message, got {Describe(message)}");
        var response = message.DialResponse ?? throw new AutoNatException("the DIAL_RESPONSE message carries no response");
        if (!response.HasStatus)
            throw new AutoNatException("the DIAL_RESPONSE message carries no status");
        var status = (AutoNatResponseStatus)response.Status;
        if (!Enum.IsDefined(status))
            throw new AutoNatException($"the DIAL_RESPONSE message carries the undefined status {(int)response.Status}");
        Multiaddress? address = null;
        if (response.HasAddr && Multiaddress.TryFromBytes(response.Addr.Span, out var parsed)) address = parsed;
        return new AutoNatDialResponse(status, response.StatusText, address);
    }

    private static string Describe(Message message) =>
        message.HasType ? $"type {(int)message.Type}" : "a message without a type";
}
