using Google.Protobuf;

namespace P2PInference.Facilities.Rpc;

/// <summary>The sending half of <see cref="ProtobufRpcCodec{T}"/>, for the side that never decodes <typeparamref name="T"/>.</summary>
internal sealed class ProtobufEncoder<T> : IRpcCodec<T> where T : IMessage<T>
{
    public ReadOnlyMemory<byte> Encode(T message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return message.ToByteArray();
    }

    public T Decode(ReadOnlyMemory<byte> payload) => throw new NotSupportedException("this codec only encodes");
}
