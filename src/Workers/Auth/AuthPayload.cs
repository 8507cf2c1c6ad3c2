using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Encoding;

namespace P2PInference.Workers.Auth;

/// <summary>Turns a request's bytes into its message, for the RPC wiring: bad bytes become InvalidArgument.</summary>
/// <remarks>
/// A member of the wrong MessagePack type makes the whole request malformed (InvalidArgument); a
/// missing member arrives empty and the service's own checks refuse it with InvalidArgument too.
/// </remarks>
public static class AuthPayload
{
    /// <summary>No Auth request comes near this: the largest holds an 8 KiB token or a 1 KiB password.</summary>
    public const int MaxRequestBytes = 64 * 1024;

    /// <exception cref="AuthException">InvalidArgument: too large or not a valid <typeparamref name="T"/>.</exception>
    public static T Parse<T>(MessagePackRpcCodec<T> parser, ReadOnlySpan<byte> payload)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(parser);
        if (payload.Length > MaxRequestBytes)
        {
            throw AuthException.InvalidArgument($"request is {payload.Length} bytes; the limit is {MaxRequestBytes}");
        }

        try
        {
            return parser.Decode(payload.ToArray());
        }
        catch (MalformedMessageException e)
        {
            throw new AuthException(AuthErrorCode.InvalidArgument, $"request is not a valid {typeof(T).Name}", inner: e);
        }
    }
}
