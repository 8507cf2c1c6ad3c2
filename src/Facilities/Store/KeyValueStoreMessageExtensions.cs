using Google.Protobuf;

namespace P2PInference.Facilities.Store;

/// <summary>Protobuf messages as store values.</summary>
public static class KeyValueStoreMessageExtensions
{
    /// <summary>The message under <paramref name="key"/>, or null when absent.</summary>
    /// <exception cref="StoreException">The stored bytes are not a valid <typeparamref name="T"/>.</exception>
    public static async ValueTask<T?> GetMessageAsync<T>(this IKeyValueStore store, string key, MessageParser<T> parser, CancellationToken cancellationToken = default)
        where T : class, IMessage<T>
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(parser);
        var bytes = await store.GetAsync(key, cancellationToken).ConfigureAwait(false);
        if (bytes is null)
        {
            return null;
        }

        try
        {
            return parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new StoreException($"The value under key '{key}' is not a valid {typeof(T).Name}: {e.Message}", inner: e);
        }
    }

    /// <summary>Stores the message's protobuf encoding; returns once durable.</summary>
    public static ValueTask PutMessageAsync(this IKeyValueStore store, string key, IMessage message, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(message);
        return store.PutAsync(key, message.ToByteArray(), cancellationToken);
    }
}
