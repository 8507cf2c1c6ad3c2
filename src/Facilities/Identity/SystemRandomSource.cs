using System.Security.Cryptography;

namespace P2PInference.Facilities.Identity;

/// <summary>The operating system's cryptographically secure generator: the default everywhere.</summary>
public sealed class SystemRandomSource : IRandomSource
{
    public static SystemRandomSource Instance { get; } = new();

    private SystemRandomSource()
    {
    }

    public void Fill(Span<byte> buffer) => RandomNumberGenerator.Fill(buffer);
}
