namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>A server's answer to a dial-back request; the values are the wire's.</summary>
public enum AutoNatResponseStatus
{
    /// <summary>A dial-back reached the requester: evidence it is publicly reachable.</summary>
    Ok = 0,

    /// <summary>Every dial-back failed: evidence it is not.</summary>
    DialError = 100,

    /// <summary>The server would not dial (limits, no address it may dial): no evidence either way.</summary>
    DialRefused = 101,

    /// <summary>The request was malformed or not about the requester.</summary>
    BadRequest = 200,

    /// <summary>The server failed for its own reasons.</summary>
    InternalError = 300,
}
