using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Facilities.Store;

/// <summary>Messages as store values, in the encoding of an <see cref="IRpcCodec{T}"/> (the worker contracts' MessagePack).</summary>
public static class KeyValueStoreMessageExtensions
{
    /// <summary>The message under <paramref name="key"/>, or null when absent.</summary>
    /// <exception cref="StoreException">The stored bytes are not a valid <typeparamref name="T"/>.</exception>
    public static async ValueTask<T?> GetMessageAsync<T>(this IKeyValueStore store, string key, IRpcCodec<T> codec, CancellationToken cancellationToken = default)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(codec);
        var bytes = await store.GetAsync(key, cancellationToken);
        if (bytes is null)
        {
            return null;
        }

        try
        {
            return codec.Decode(bytes);
        }
        catch (MalformedMessageException e)
        {
            throw new StoreException($"The value under key '{key}' is not a valid {typeof(T).Name}: {e.Message}", inner: e);
        }
    }

    /// <summary>Stores the message's encoding; returns once durable.</summary>
    public static ValueTask PutMessageAsync<T>(this IKeyValueStore store, string key, T message, IRpcCodec<T> codec, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(codec);
        return store.PutAsync(key, codec.Encode(message), cancellationToken);
    }
}
