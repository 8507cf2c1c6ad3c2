using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace P2PInference.TestKit.Harness;

/// <summary>
/// Derives independent, stable values from a test's seed and a purpose ("identity", a node's name…),
/// without string hashing (which .NET randomizes per process), so a seed replays across runs.
/// </summary>
internal static class SeedDerivation
{
    public static byte[] Bytes(int seed, params ReadOnlySpan<string> parts)
    {
        var text = new StringBuilder("p2pinference-testkit|").Append(seed);
        foreach (var part in parts) text.Append('|').Append(part.Length).Append(':').Append(part);
        return SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString()));
    }

    public static int Int(int seed, params ReadOnlySpan<string> parts) =>
        BinaryPrimitives.ReadInt32LittleEndian(Bytes(seed, parts));
}
