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
            message = MessagePackSerializer.Deserialize<T>(payload, MessagePackWire.Untrusted, out read);
        }
        catch (Exception e) when (e is MessagePackSerializationException or EndOfStreamException or InsufficientExecutionStackException or OverflowException)
        {
            throw new MalformedMessageException($"malformed {typeof(T).Name} message: {Innermost(e).Message}", e);
        }
        if (message is null) throw new MalformedMessageException($"nil where a {typeof(T).Name} message was expected");
        // Protobuf would have read concatenated messages as one; MessagePack must not silently ignore the rest.
        if (read != payload.Length)
            throw new MalformedMessageException($"{payload.Length - read} bytes after the {typeof(T).Name} message");
        WireDefaults.Fill(message);
        return message;
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is { } inner) e = inner;
        return e;
    }
}
