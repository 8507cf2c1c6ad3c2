namespace P2PInference.Facilities.Rpc;

/// <summary>
/// Why a call failed, in the spirit of gRPC status codes. The numbers are the wire values of
/// <see cref="Wire.RpcError.Code"/>; a code this version does not know arrives as <see cref="Internal"/>.
/// </summary>
public enum RpcStatusCode
{
    /// <summary>The server has no handler for the method (or not of the kind the client asked for).</summary>
    UnknownMethod = 1,
    InvalidArgument = 2,
    Unauthenticated = 3,
    /// <summary>The server's firewall does not let this peer call it, or this method.</summary>
    PermissionDenied = 4,
    NotFound = 5,
    AlreadyExists = 6,
    /// <summary>A limit was hit: message size, concurrent calls per peer, a rate limit. Retry later (see <see cref="RpcException.RetryAfter"/>).</summary>
    ResourceExhausted = 7,
    /// <summary>The peer could not be reached, went away mid-call, or is stopping. Safe to retry an idempotent call elsewhere.</summary>
    Unavailable = 8,
    DeadlineExceeded = 9,
    Cancelled = 10,
    /// <summary>The handler failed (its exception message, never its stack trace) or the peer broke the protocol.</summary>
    Internal = 11,
}
