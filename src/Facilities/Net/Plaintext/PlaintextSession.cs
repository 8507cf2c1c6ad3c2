using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Plaintext;

/// <summary>
/// The outcome of a plaintext exchange: the same, unencrypted <see cref="Stream"/> it ran on, and the
/// remote's peer id and key. The key is only what the remote claimed: nothing proves it holds the
/// private half, which is why plaintext is for tests and simulations only.
/// </summary>
public sealed record PlaintextSession(Stream Stream, PeerId RemotePeer, PublicKey RemotePublicKey);
