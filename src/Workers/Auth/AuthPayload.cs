using Google.Protobuf;

namespace P2PInference.Workers.Auth;

/// <summary>Turns a request's bytes into its message, for the RPC wiring: bad bytes become InvalidArgument.</summary>
/// <remarks>
/// A field sent with the wrong wire type is skipped as unknown by protobuf, so it arrives as a
/// missing field and the service's own checks refuse it with InvalidArgument too.
/// </remarks>
public static class AuthPayload
{
    /// <summary>No Auth request comes near this: the largest holds an 8 KiB token or a 1 KiB password.</summary>
    public const int MaxRequestBytes = 64 * 1024;

    /// <exception cref="AuthException">InvalidArgument: too large or not a valid <typeparamref name="T"/>.</exception>
    public static T Parse<T>(MessageParser<T> parser, ReadOnlySpan<byte> payload)
        where T : IMessage<T>
    {
        ArgumentNullException.ThrowIfNull(parser);
        if (payload.Length > MaxRequestBytes)
        {
            throw AuthException.InvalidArgument($"request is {payload.Length} bytes; the limit is {MaxRequestBytes}");
        }

        try
        {
            return parser.ParseFrom(payload);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new AuthException(AuthErrorCode.InvalidArgument, $"request is not a valid {typeof(T).Name}", inner: e);
        }
    }
}
