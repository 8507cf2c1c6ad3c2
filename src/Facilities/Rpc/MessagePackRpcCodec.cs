using System.Buffers;
using MessagePack;
using P2PInference.Facilities.Encoding;

namespace P2PInference.Facilities.Rpc;

/// <summary>
/// MessagePack contract types (<c>[MessagePackObject]</c> with integer keys) as RPC payloads.
/// Decoding treats the bytes as untrusted (<see cref="MessagePackWire.Untrusted"/>): anything
/// that is not exactly one <typeparamref name="T"/> fails with a <see cref="MalformedMessageException"/>,
/// and nil sent for a member that is not nullable arrives as its empty value, so handlers never
/// see a null the contract does not allow.
/// </summary>
public sealed class MessagePackRpcCodec<T> : IRpcCodec<T>
    where T : class
{
    public static MessagePackRpcCodec<T> Instance { get; } = new();

    private MessagePackRpcCodec()
    {
    }

    public ReadOnlyMemory<byte> Encode(T message) => ToByteArray(message);

    public byte[] ToByteArray(T message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return MessagePackSerializer.Serialize(message, MessagePackWire.Trusted);
    }

    /// <summary>Writes the encoding of <paramref name="message"/> to <paramref name="writer"/>, for callers that frame it themselves.</summary>
    public void Encode(IBufferWriter<byte> writer, T message)
    {
        ArgumentNullException.ThrowIfNull(message);
        MessagePackSerializer.Serialize(writer, message, MessagePackWire.Trusted);
    }

    /// <exception cref="MalformedMessageException">The bytes are not exactly one valid <typeparamref name="T"/>.</exception>
    public T Decode(ReadOnlyMemory<byte> payload)
    {
        T? message;
        int read;
        try
        {
            CheckDepth(payload);
            message = MessagePackSerializer.Deserialize<T>(payload, MessagePackWire.Untrusted, out read);
        }
        // MessagePackReader.Skip reports a length past the end as ArgumentOutOfRangeException.
        catch (Exception e) when (e is MessagePackSerializationException or EndOfStreamException or InsufficientExecutionStackException or OverflowException
            or ArgumentOutOfRangeException)
        {
            throw new MalformedMessageException($"malformed {typeof(T).Name} message: {Innermost(e).Message}", e);
        }
        if (message is null) throw new MalformedMessageException($"nil where a {typeof(T).Name} message was expected");
        // A second message, or garbage, after the first must not pass unnoticed.
        if (read != payload.Length)
            throw new MalformedMessageException($"{payload.Length - read} bytes after the {typeof(T).Name} message");
        WireDefaults.Fill(message);
        return message;
    }

    /// <summary>
    /// Walks the message once, building nothing, and refuses nesting deeper than
    /// <see cref="MessagePackWire.MaxDepth"/> anywhere in it. The deserializer's own limit covers
    /// only the members it builds; members of a newer contract version it skips unchecked.
    /// </summary>
    private static void CheckDepth(ReadOnlyMemory<byte> payload)
    {
        var reader = new MessagePackReader(payload);
        // Values still to read in each open array or map; level 0 holds the one top-level value.
        Span<long> left = stackalloc long[MessagePackWire.MaxDepth + 1];
        left[0] = 1;
        var depth = 0;
        while (depth >= 0)
        {
            if (left[depth] == 0)
            {
                depth--;
                continue;
            }
            left[depth]--;
            long count;
            switch (reader.NextMessagePackType)
            {
                case MessagePackType.Array:
                    count = reader.ReadArrayHeader();
                    break;
                case MessagePackType.Map:
                    count = 2L * reader.ReadMapHeader();
                    break;
                default:
                    reader.Skip();
                    continue;
            }
            if (depth == MessagePackWire.MaxDepth)
                throw new MessagePackSerializationException($"nested deeper than {MessagePackWire.MaxDepth} levels");
            left[++depth] = count;
        }
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is { } inner) e = inner;
        return e;
    }
}
