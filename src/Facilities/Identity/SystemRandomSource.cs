using System.Security.Cryptography;

namespace P2PInference.Facilities.Identity;

/// <summary>The operating system's cryptographically secure generator: the default everywhere.</summary>
public sealed class SystemRandomSource : IRandomSource
{
    public static SystemRandomSource Instance { get; } = new();

    private SystemRandomSource()
    {
    }

#pragma warning disable RS0030 // The one sanctioned door to the OS CSPRNG; everything else draws through IRandomSource.
    public void Fill(Span<byte> buffer) => RandomNumberGenerator.Fill(buffer);
#pragma warning restore RS0030
}
