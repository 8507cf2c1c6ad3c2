using Google.Protobuf;
using P2PInference.Facilities.Encoding;

namespace P2PInference.Facilities.Rpc;

/// <summary>Generated protobuf messages as RPC payloads.</summary>
public sealed class ProtobufRpcCodec<T>(MessageParser<T> parser) : IRpcCodec<T>
    where T : IMessage<T>
{
    private readonly MessageParser<T> _parser = parser ?? throw new ArgumentNullException(nameof(parser));

    public ReadOnlyMemory<byte> Encode(T message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return message.ToByteArray();
    }

    /// <exception cref="MalformedMessageException">The bytes are not a valid <typeparamref name="T"/>.</exception>
    public T Decode(ReadOnlyMemory<byte> payload) => LengthPrefixedMessage.Parse(_parser, payload.Span);
}
