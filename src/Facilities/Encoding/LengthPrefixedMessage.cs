using System.Buffers;
using Google.Protobuf;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Encoding;

/// <summary>
/// Messages framed by an unsigned-varint length, as identify, kad-dht and our RPC put them on a
/// stream. Reads take exactly one message's bytes and nothing more, so a protocol can go on using
/// the same stream afterwards.
/// </summary>
/// <remarks>
/// Errors: a length above the caller's limit is a <see cref="MessageTooLargeException"/> (before any
/// allocation); a malformed prefix or protobuf body is a <see cref="MalformedMessageException"/>;
/// a stream that ends inside a message (prefix or body) is an <see cref="EndOfStreamException"/>,
/// since that is the peer going away rather than sending bad bytes. All three are
/// <see cref="IOException"/>s.
/// </remarks>
public static class LengthPrefixedMessage
{
    internal const string ProtocolName = "length-prefixed message";

    /// <summary>
    /// Reads one message. Returns null when the stream ends cleanly before the first byte.
    /// </summary>
    /// <exception cref="MessageTooLargeException">The prefix announces more than <paramref name="maxLength"/> bytes.</exception>
    /// <exception cref="MalformedMessageException">The varint prefix is overlong or not minimal.</exception>
    /// <exception cref="EndOfStreamException">The stream ended inside the message.</exception>
    public static async ValueTask<byte[]?> ReadAsync(Stream stream, int maxLength, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfNegative(maxLength);
        var length = await ReadLengthAsync(stream, maxLength, cancellationToken);
        if (length is null) return null;
        if (length.Value <= FirstChunk)
        {
            var body = length.Value == 0 ? [] : new byte[length.Value];
            if (body.Length > 0)
                await stream.ReadExactOnContextAsync(body, cancellationToken);
            return body;
        }
        var buffer = await ReadBodyRentedAsync(stream, length.Value, cancellationToken);
        try
        {
            return buffer.AsSpan(0, length.Value).ToArray();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// <see cref="ReadAsync{T}(Stream, MessageParser{T}, int, CancellationToken)"/> of a message whose first byte,
    /// <paramref name="firstByte"/>, the caller has read already (-1 when it has not): for a caller that waits for
    /// the next message itself, so that waiting suspends its method alone. Never null then.
    /// </summary>
    internal static async ValueTask<T?> ReadAsync<T>(Stream stream, MessageParser<T> parser, int maxLength, int firstByte, CancellationToken cancellationToken)
        where T : class, IMessage<T>
    {
        ArgumentNullException.ThrowIfNull(parser);
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfNegative(maxLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(firstByte, byte.MaxValue);
        // The prefix is read here rather than through ReadLengthAsync: a reader waiting for the next message
        // then suspends one method instead of three.
        int? length = null;
        var prefix = default(VarintAccumulator);
        if (firstByte < 0 || !TakePrefix(ref prefix, 1, (byte)firstByte, maxLength, out length))
        {
            var scratch = ArrayPool<byte>.Shared.Rent(1);
            try
            {
                while (true)
                {
                    var read = await stream.ReadAsync(scratch.AsMemory(0, 1), cancellationToken);
                    if (TakePrefix(ref prefix, read, scratch[0], maxLength, out length)) break;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(scratch);
            }
        }
        if (length is null) return null;
        // The body is only needed until it is parsed, so it can come from the pool.
        var buffer = await ReadBodyRentedAsync(stream, length.Value, cancellationToken);
        try
        {
            return Parse(parser, buffer.AsSpan(0, length.Value));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Reads one message into the first <c>Length</c> bytes of a buffer rented from <see cref="ArrayPool{T}.Shared"/>,
    /// which the caller returns; a null buffer when the stream ends cleanly before the first byte.
    /// </summary>
    /// <inheritdoc cref="ReadAsync(Stream, int, CancellationToken)"/>
    internal static async ValueTask<(byte[]? Buffer, int Length)> ReadRentedAsync(Stream stream, int maxLength, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfNegative(maxLength);
        var length = await ReadLengthAsync(stream, maxLength, cancellationToken);
        if (length is null) return (null, 0);
        return (await ReadBodyRentedAsync(stream, length.Value, cancellationToken), length.Value);
    }

    /// <summary>
    /// Parses a protobuf body, turning malformed input (including missing proto2 required fields)
    /// into a <see cref="MalformedMessageException"/>.
    /// </summary>
    public static T Parse<T>(MessageParser<T> parser, ReadOnlySpan<byte> body)
        where T : IMessage<T>
    {
        ArgumentNullException.ThrowIfNull(parser);
        T message;
        try
        {
            message = parser.ParseFrom(body);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new MalformedMessageException($"malformed {typeof(T).Name} message: {e.Message}", e);
        }
        // The parser does not enforce proto2 'required'; a message without them is as bad as garbage.
        if (InitializationCheck<T>.Needed(message) && !message.IsInitialized())
            throw new MalformedMessageException($"{typeof(T).Name} message lacks required fields");
        return message;
    }

    /// <summary>Writes the varint length and the body with a single write call, then flushes.</summary>
    public static async ValueTask WriteAsync(Stream stream, ReadOnlyMemory<byte> message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var prefix = Varint.GetLength((ulong)message.Length);
        var buffer = ArrayPool<byte>.Shared.Rent(prefix + message.Length);
        try
        {
            Varint.Write(buffer, (ulong)message.Length);
            message.Span.CopyTo(buffer.AsSpan(prefix));
            await stream.WriteAsync(buffer.AsMemory(0, prefix + message.Length), cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        await stream.FlushAsync(cancellationToken);
    }

    /// <summary>Serializes <paramref name="message"/> and writes it length-prefixed in a single write call.</summary>
    public static async ValueTask WriteAsync(Stream stream, IMessage message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(message);
        var buffer = RentFrame(message, out var length);
        try
        {
            await stream.WriteAsync(buffer.AsMemory(0, length), cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        await stream.FlushAsync(cancellationToken);
    }

    /// <summary>
    /// <paramref name="message"/>, length-prefixed, in the first <paramref name="length"/> bytes of a buffer
    /// rented from <see cref="ArrayPool{T}.Shared"/>, which the caller returns.
    /// </summary>
    public static byte[] RentFrame(IMessage message, out int length)
    {
        ArgumentNullException.ThrowIfNull(message);
        var size = message.CalculateSize();
        var prefix = Varint.GetLength((ulong)size);
        var buffer = ArrayPool<byte>.Shared.Rent(prefix + size);
        Varint.Write(buffer, (ulong)size);
        message.WriteTo(buffer.AsSpan(prefix, size));
        length = prefix + size;
        return buffer;
    }

    /// <summary>What a body's buffer starts at; it doubles as bytes arrive, up to the announced length.</summary>
    internal const int FirstChunk = 64 * 1024;

    /// <summary>
    /// The body of a message whose prefix announced <paramref name="length"/> bytes, in the first
    /// <paramref name="length"/> bytes of a buffer rented from <see cref="ArrayPool{T}.Shared"/>, which the
    /// caller returns. Memory is taken as bytes arrive (from <see cref="FirstChunk"/>, doubling): a peer
    /// that announces a message of the largest allowed size and then sends nothing, on each of the
    /// streams it may open, must not make us hold that size per stream.
    /// </summary>
    /// <exception cref="EndOfStreamException">The stream ended inside the body.</exception>
    internal static async ValueTask<byte[]> ReadBodyRentedAsync(Stream stream, int length, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(length, FirstChunk));
        var filled = 0;
        try
        {
            while (filled < length)
            {
                if (filled == buffer.Length)
                {
                    var larger = ArrayPool<byte>.Shared.Rent((int)Math.Min(length, 2L * buffer.Length));
                    buffer.AsSpan(0, filled).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }
                var read = await stream.ReadAsync(buffer.AsMemory(filled, Math.Min(buffer.Length, length) - filled), cancellationToken);
                if (read == 0) throw new EndOfStreamException($"the stream ended after {filled} of {length} bytes");
                filled += read;
            }
            return buffer;
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }
    }

    /// <summary>Reads and bounds the prefix; null on a clean end of stream before it.</summary>
    internal static async ValueTask<int?> ReadLengthAsync(Stream stream, int maxLength, CancellationToken cancellationToken)
    {
        var scratch = ArrayPool<byte>.Shared.Rent(1);
        try
        {
            var prefix = default(VarintAccumulator);
            while (true)
            {
                var read = await stream.ReadAsync(scratch.AsMemory(0, 1), cancellationToken);
                if (TakePrefix(ref prefix, read, scratch[0], maxLength, out var length)) return length;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <summary>
    /// Takes what one single-byte read of the prefix gave (<paramref name="read"/> bytes, <paramref name="b"/>):
    /// false while more of it is needed; true at its end, with the bounded length, or null for a clean end
    /// of stream before it.
    /// </summary>
    private static bool TakePrefix(ref VarintAccumulator prefix, int read, byte b, int maxLength, out int? length)
    {
        length = null;
        if (read == 0)
        {
            if (prefix.Count == 0) return true;
            throw new EndOfStreamException("stream ended inside a varint");
        }
        if (!prefix.Add(b, out var error)) return false;
        if (error is not null) throw new MalformedMessageException("invalid length prefix: " + error, new FormatException(error));
        if (prefix.Value > (ulong)maxLength)
            throw new MessageTooLargeException(prefix.Value, maxLength);
        length = (int)prefix.Value;
        return true;
    }

    /// <summary>
    /// Whether a parsed <typeparamref name="T"/> can fail <see cref="MessageExtensions.IsInitialized"/>: only when a
    /// required field or an extension can be reached from it. Most of what we parse (kad's proto3 messages) can
    /// not, and the check walks the descriptor (allocating as it goes) for every message.
    /// </summary>
    private static class InitializationCheck<T>
        where T : IMessage<T>
    {
        // 0 not known yet, 1 needed, 2 not needed; computed once per type (racing threads compute the same).
        private static int s_state;

        public static bool Needed(T message)
        {
            var state = Volatile.Read(ref s_state);
            if (state == 0)
            {
                state = CanBeUninitialized(message.Descriptor, []) ? 1 : 2;
                Volatile.Write(ref s_state, state);
            }
            return state == 1;
        }
    }

    private static bool CanBeUninitialized(Google.Protobuf.Reflection.MessageDescriptor descriptor, HashSet<Google.Protobuf.Reflection.MessageDescriptor> visited)
    {
        if (!visited.Add(descriptor)) return false;
        // A message with extension ranges may carry extensions with required fields of their own.
        if (descriptor.ClrType is { } type && type.GetInterfaces().Any(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IExtendableMessage<>)))
            return true;
        foreach (var field in descriptor.Fields.InDeclarationOrder())
        {
            if (field.IsRequired) return true;
            // Map entries are messages too, so a map's message values are walked here.
            if (field.FieldType is Google.Protobuf.Reflection.FieldType.Message or Google.Protobuf.Reflection.FieldType.Group
                && CanBeUninitialized(field.MessageType, visited))
                return true;
        }
        return false;
    }

    // Declared last: the compiler numbers the state machines of the members declared after a new one anew, and the
    // simulation's trace hash names them; the async overload above took this one's place.

    /// <summary>Reads one message and parses it as <typeparamref name="T"/>; null on a clean end of stream.</summary>
    /// <exception cref="MalformedMessageException">The body is not a valid <typeparamref name="T"/>.</exception>
    /// <inheritdoc cref="ReadAsync(Stream, int, CancellationToken)"/>
    public static ValueTask<T?> ReadAsync<T>(Stream stream, MessageParser<T> parser, int maxLength, CancellationToken cancellationToken)
        where T : class, IMessage<T> =>
        ReadAsync(stream, parser, maxLength, firstByte: -1, cancellationToken);
}
