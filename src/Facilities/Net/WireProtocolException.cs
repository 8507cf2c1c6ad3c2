namespace P2PInference.Facilities.Net;

/// <summary>
/// The remote broke a wire protocol: malformed or oversized frame, wrong message, bad signature.
/// The offending stream or connection is closed; <see cref="Protocol"/> names which layer objected.
/// Each protocol throws its own subclass so callers can tell them apart.
/// </summary>
public class WireProtocolException(string protocol, string message, Exception? inner = null)
    : IOException(Prefixed(protocol, message), inner)
{
    public string Protocol { get; } = protocol;

    // An error thrown again as a new exception (each throw of a stored reset gets its own stack) carries
    // a message that has its prefix already: "yamux: yamux: …" helped no one.
    private static string Prefixed(string protocol, string message) =>
        message.StartsWith(protocol + ": ", StringComparison.Ordinal) ? message : $"{protocol}: {message}";
}
