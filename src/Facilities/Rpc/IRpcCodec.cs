namespace P2PInference.Facilities.Rpc;

/// <summary>
/// Turns messages of type <typeparamref name="T"/> into payload bytes and back. MessagePack is the
/// codec here (<see cref="MessagePackRpcCodec{T}"/>); another plugs in by implementing this.
/// </summary>
public interface IRpcCodec<T>
{
    ReadOnlyMemory<byte> Encode(T message);

    /// <summary>Decodes untrusted bytes; throws on malformed input (any exception: the caller maps it to a status code).</summary>
    T Decode(ReadOnlyMemory<byte> payload);
}
