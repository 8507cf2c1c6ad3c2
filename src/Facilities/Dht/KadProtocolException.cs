using P2PInference.Facilities.Net;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// A kad peer sent a message we cannot act on: an unknown type, an oversized key or record, a
/// request without its key, or a reply of the wrong type; or it did not take our reply in time. The
/// stream it came on is reset.
/// </summary>
public sealed class KadProtocolException(string message, Exception? inner = null)
    : WireProtocolException("kad-dht", message, inner);
