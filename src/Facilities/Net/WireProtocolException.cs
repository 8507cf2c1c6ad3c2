namespace P2PInference.Facilities.Net;

/// <summary>
/// The remote broke a wire protocol: malformed or oversized frame, wrong message, bad signature.
/// The offending stream or connection is closed; <see cref="Protocol"/> names which layer objected.
/// Each protocol throws its own subclass so callers can tell them apart.
/// </summary>
public class WireProtocolException(string protocol, string message, Exception? inner = null)
    : IOException($"{protocol}: {message}", inner)
{
    public string Protocol { get; } = protocol;
}
