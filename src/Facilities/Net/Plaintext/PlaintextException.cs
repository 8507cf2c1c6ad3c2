namespace P2PInference.Facilities.Net.Plaintext;

/// <summary>
/// The plaintext exchange failed: a truncated, oversized or malformed <c>Exchange</c> message, a
/// peer id that does not match the key sent with it, or a remote that is not the expected peer.
/// </summary>
public sealed class PlaintextException(string message, Exception? inner = null)
    : WireProtocolException("plaintext", message, inner);
