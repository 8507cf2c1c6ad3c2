namespace P2PInference.Workers.Auth;

/// <summary>
/// A refused Auth call: a typed <see cref="Code"/> and a message safe to show the caller (it never
/// says which half of a login was wrong, nor echoes secrets). Thrown before any stored data
/// changes.
/// </summary>
public sealed class AuthException : Exception
{
    public AuthException(AuthErrorCode code, string message, TimeSpan? retryAfter = null, Exception? inner = null)
        : base(message, inner)
    {
        Code = code;
        RetryAfter = retryAfter;
    }

    public AuthErrorCode Code { get; }

    /// <summary>For <see cref="AuthErrorCode.ResourceExhausted"/>: how long until the caller may try again.</summary>
    public TimeSpan? RetryAfter { get; }

    internal static AuthException InvalidArgument(string message) => new(AuthErrorCode.InvalidArgument, message);

    internal static AuthException Unauthenticated(string message, Exception? inner = null) => new(AuthErrorCode.Unauthenticated, message, inner: inner);
}
