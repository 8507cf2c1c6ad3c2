using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using Proto = P2PInference.Facilities.Net.Protocols.Relay.Proto;

namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>
/// Circuit relay v2 messages on a stream, each framed by an unsigned-varint length.
/// </summary>
/// <remarks>
/// Errors: bytes that are not a protobuf message are a <see cref="MalformedMessageException"/>, a
/// prefix above <see cref="MaxMessageLength"/> a <see cref="MessageTooLargeException"/> (before
/// allocating), a stream that ends before or inside the message an <see cref="EndOfStreamException"/>,
/// and a message that decodes but is not valid (undefined type or status, bad peer id) a
/// <see cref="RelayProtocolException"/>. All are <see cref="IOException"/>s. Addresses of transports
/// we cannot parse are skipped, as they are normal in a mixed network.
/// </remarks>
public static class RelayMessageCodec
{
    public const string HopProtocolId = "/libp2p/circuit/relay/0.2.0/hop";
    public const string StopProtocolId = "/libp2p/circuit/relay/0.2.0/stop";

    /// <summary>go- and js-libp2p read relay messages of at most 4 KiB; so do we, and we never send more.</summary>
    public const int MaxMessageLength = 4096;

    /// <exception cref="ArgumentException">The message would exceed <see cref="MaxMessageLength"/>.</exception>
    public static ValueTask WriteAsync(Stream stream, HopMessage message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(message);
        return WriteAsync(stream, ToProto(message), cancellationToken);
    }

    /// <exception cref="ArgumentException">The message would exceed <see cref="MaxMessageLength"/>.</exception>
    public static ValueTask WriteAsync(Stream stream, StopMessage message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(message);
        return WriteAsync(stream, ToProto(message), cancellationToken);
    }

    /// <summary>Reads one hop message.</summary>
    /// <exception cref="EndOfStreamException">The stream ended before or inside the message.</exception>
    public static async ValueTask<HopMessage> ReadHopAsync(Stream stream, CancellationToken cancellationToken) =>
        FromProto(await ReadAsync(stream, Proto.HopMessage.Parser, cancellationToken));

    /// <summary>Reads one stop message.</summary>
    /// <exception cref="EndOfStreamException">The stream ended before or inside the message.</exception>
    public static async ValueTask<StopMessage> ReadStopAsync(Stream stream, CancellationToken cancellationToken) =>
        FromProto(await ReadAsync(stream, Proto.StopMessage.Parser, cancellationToken));

    /// <summary>
    /// Reads a request within <paramref name="timeout"/>. One that is not a valid message comes back as
    /// the status to refuse it with and why: MALFORMED_MESSAGE for bytes that do not decode, the
    /// exception's own status for a message that decodes but makes no sense.
    /// </summary>
    /// <exception cref="EndOfStreamException">The stream ended before or inside the request.</exception>
    /// <exception cref="OperationCanceledException">The request did not arrive in time, or the token fired.</exception>
    internal static async ValueTask<(T? Request, RelayStatus Refusal, string? Reason)> ReadRequestAsync<T>(Stream stream,
        Func<Stream, CancellationToken, ValueTask<T>> read, TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
        where T : class
    {
        using var deadline = new CancellationTokenSource(timeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        try
        {
            return (await read(stream, linked.Token), RelayStatus.Ok, null);
        }
        catch (RelayProtocolException e)
        {
            return (null, e.Status, e.Message);
        }
        catch (Exception e) when (e is MalformedMessageException or MessageTooLargeException)
        {
            return (null, RelayStatus.MalformedMessage, e.Message);
        }
    }

    /// <summary>Decodes a hop message body (no prefix).</summary>
    public static HopMessage ParseHop(ReadOnlySpan<byte> body) => FromProto(LengthPrefixedMessage.Parse(Proto.HopMessage.Parser, body));

    /// <summary>Decodes a stop message body (no prefix).</summary>
    public static StopMessage ParseStop(ReadOnlySpan<byte> body) => FromProto(LengthPrefixedMessage.Parse(Proto.StopMessage.Parser, body));

    private static async ValueTask WriteAsync(Stream stream, IMessage message, CancellationToken cancellationToken)
    {
        var size = message.CalculateSize();
        if (size > MaxMessageLength)
            throw new ArgumentException($"relay message of {size} bytes exceeds {MaxMessageLength}, which other implementations refuse");
        await LengthPrefixedMessage.WriteAsync(stream, message, cancellationToken);
    }

    private static async ValueTask<T> ReadAsync<T>(Stream stream, MessageParser<T> parser, CancellationToken cancellationToken)
        where T : class, IMessage<T>
    {
        ArgumentNullException.ThrowIfNull(stream);
        return await LengthPrefixedMessage.ReadAsync(stream, parser, MaxMessageLength, cancellationToken)
            ?? throw new EndOfStreamException("the stream ended before a relay message");
    }

    private static Proto.HopMessage ToProto(HopMessage message)
    {
        var proto = new Proto.HopMessage { Type = (Proto.HopMessage.Types.Type)message.Type };
        if (message.Peer is not null) proto.Peer = ToProto(message.Peer);
        if (message.Reservation is { } reservation)
        {
            proto.Reservation = new Proto.Reservation { Expire = (ulong)Math.Max(0, reservation.Expires.ToUnixTimeSeconds()) };
            foreach (var address in reservation.Addresses) proto.Reservation.Addrs.Add(ByteString.CopyFrom(address.Bytes));
            if (!reservation.Voucher.IsEmpty) proto.Reservation.Voucher = ByteString.CopyFrom(reservation.Voucher.Span);
        }
        if (message.Limit is { IsUnlimited: false } limit) proto.Limit = ToProto(limit);
        if (message.Status is { } status) proto.Status = (Proto.Status)status;
        return proto;
    }

    private static Proto.StopMessage ToProto(StopMessage message)
    {
        var proto = new Proto.StopMessage { Type = (Proto.StopMessage.Types.Type)message.Type };
        if (message.Peer is not null) proto.Peer = ToProto(message.Peer);
        if (message.Limit is { IsUnlimited: false } limit) proto.Limit = ToProto(limit);
        if (message.Status is { } status) proto.Status = (Proto.Status)status;
        return proto;
    }

    private static Proto.Peer ToProto(RelayPeerInfo peer)
    {
        var proto = new Proto.Peer { Id = ByteString.CopyFrom(peer.Id.ToByteArray()) };
        foreach (var address in peer.Addresses) proto.Addrs.Add(ByteString.CopyFrom(address.Bytes));
        return proto;
    }

    private static Proto.Limit ToProto(RelayLimit limit)
    {
        var proto = new Proto.Limit();
        // The wire carries whole seconds; rounding up never cuts a connection earlier than promised.
        if (limit.Duration is { } duration) proto.Duration = (uint)Math.Min(uint.MaxValue, Math.Ceiling(duration.TotalSeconds));
        if (limit.Data is { } data) proto.Data = (ulong)Math.Max(0, data);
        return proto;
    }

    private static HopMessage FromProto(Proto.HopMessage proto)
    {
        var type = (HopMessageType)proto.Type;
        if (!Enum.IsDefined(type)) throw new RelayProtocolException($"undefined hop message type {(int)proto.Type}");
        RelayReservationInfo? reservation = null;
        if (proto.Reservation is { } r)
        {
            // Anything past year 9999 is as good as never; DateTimeOffset cannot hold it.
            var expire = (long)Math.Min(r.Expire, (ulong)DateTimeOffset.MaxValue.ToUnixTimeSeconds());
            reservation = new RelayReservationInfo(DateTimeOffset.FromUnixTimeSeconds(expire), ParseAddresses(r.Addrs),
                r.HasVoucher ? r.Voucher.ToByteArray() : ReadOnlyMemory<byte>.Empty);
        }
        return new HopMessage(type, FromProto(proto.Peer), reservation, FromProto(proto.Limit), StatusOf(proto.HasStatus, proto.Status));
    }

    private static StopMessage FromProto(Proto.StopMessage proto)
    {
        var type = (StopMessageType)proto.Type;
        if (!Enum.IsDefined(type)) throw new RelayProtocolException($"undefined stop message type {(int)proto.Type}");
        return new StopMessage(type, FromProto(proto.Peer), FromProto(proto.Limit), StatusOf(proto.HasStatus, proto.Status));
    }

    private static RelayStatus? StatusOf(bool present, Proto.Status status)
    {
        if (!present) return null;
        var value = (RelayStatus)status;
        if (!Enum.IsDefined(value)) throw new RelayProtocolException($"undefined relay status {(int)status}");
        return value;
    }

    private static RelayPeerInfo? FromProto(Proto.Peer? proto)
    {
        if (proto is null) return null;
        PeerId id;
        try
        {
            id = PeerId.FromBytes(proto.Id.Span);
        }
        catch (FormatException e)
        {
            throw new RelayProtocolException("the message's peer id is malformed: " + e.Message, inner: e);
        }
        return new RelayPeerInfo(id, ParseAddresses(proto.Addrs));
    }

    private static RelayLimit? FromProto(Proto.Limit? proto)
    {
        if (proto is null) return null;
        return new RelayLimit(
            proto.HasDuration ? TimeSpan.FromSeconds(proto.Duration) : null,
            proto.HasData ? (long)Math.Min(proto.Data, long.MaxValue) : null);
    }

    private static List<Multiaddress> ParseAddresses(IEnumerable<ByteString> addresses)
    {
        var parsed = new List<Multiaddress>();
        foreach (var bytes in addresses)
        {
            if (Multiaddress.TryFromBytes(bytes.Span, out var address)) parsed.Add(address);
        }
        return parsed;
    }
}
