using System.Security.Cryptography;

namespace P2PInference.Facilities.Discovery;

/// <summary>
/// The DHT key of a topic: the sha2-256 multihash of its UTF-8 bytes (0x12 0x20 ‖ SHA-256), the
/// same key js-libp2p uses for a CIDv1 (raw) of those bytes (docs/architecture.md).
/// </summary>
public static class TopicKey
{
    public static byte[] For(string topic)
    {
        ArgumentNullException.ThrowIfNull(topic);
        var key = new byte[34];
        key[0] = 0x12;
        key[1] = 0x20;
        SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(topic), key.AsSpan(2));
        return key;
    }
}
