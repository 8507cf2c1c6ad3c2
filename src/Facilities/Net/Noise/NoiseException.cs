namespace P2PInference.Facilities.Net.Noise;

/// <summary>
/// The Noise secure channel failed: a malformed or truncated frame, a handshake payload that is
/// malformed or carries a bad signature, a remote that is not the expected peer, or bytes that do
/// not decrypt (tampered or out of order). A <see cref="NoiseSecureStream"/> that threw one is unusable.
/// </summary>
public sealed class NoiseException(string message, Exception? inner = null)
    : WireProtocolException("noise", message, inner);
