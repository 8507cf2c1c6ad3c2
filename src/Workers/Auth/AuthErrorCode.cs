namespace P2PInference.Workers.Auth;

/// <summary>
/// Why an Auth call was refused. Each value has the name of the RPC status it maps to one-to-one
/// (docs/architecture.md), so wiring the service to RPC is a name-for-name mapping.
/// </summary>
public enum AuthErrorCode
{
    /// <summary>The request is malformed, a field is missing, too long, or fails a policy.</summary>
    InvalidArgument,

    /// <summary>Wrong credentials, or a token or API key that is forged, expired, malformed or revoked.</summary>
    Unauthenticated,

    /// <summary>The caller is known but may not act on the resource (another user's API key).</summary>
    PermissionDenied,

    /// <summary>The resource does not exist.</summary>
    NotFound,

    /// <summary>The resource exists already (an email registered twice).</summary>
    AlreadyExists,

    /// <summary>Too many attempts: the login throttle. <see cref="AuthException.RetryAfter"/> says when to try again.</summary>
    ResourceExhausted,
}
