using System.Buffers.Binary;

namespace P2PInference.Facilities.Identity;

/// <summary>The few shapes drawn from an <see cref="IRandomSource"/>: ids, seeds and the <see cref="Random"/> they seed.</summary>
public static class RandomSourceExtensions
{
    /// <summary><paramref name="byteCount"/> fresh bytes as lowercase hex (ids: trace, user, key).</summary>
    public static string NextHex(this IRandomSource source, int byteCount)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfLessThan(byteCount, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(byteCount, 256);
        Span<byte> bytes = stackalloc byte[byteCount];
        source.Fill(bytes);
        return Convert.ToHexStringLower(bytes);
    }

    /// <summary>A seed in [0, int.MaxValue), the range <see cref="Random"/>'s seeded constructor spreads well.</summary>
    public static int NextSeed(this IRandomSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        Span<byte> bytes = stackalloc byte[sizeof(uint)];
        source.Fill(bytes);
        // Clearing the top bit keeps every draw valid; int.MaxValue itself is folded to 0 to keep the half-open range.
        var value = (int)(BinaryPrimitives.ReadUInt32LittleEndian(bytes) & int.MaxValue);
        return value == int.MaxValue ? 0 : value;
    }

    /// <summary>
    /// A <see cref="Random"/> seeded from <paramref name="source"/>: for choices (load balancing,
    /// jitter), never for secrets. From a seeded source it replays; from the system one it differs per run.
    /// </summary>
    public static Random CreateRandom(this IRandomSource source) => new(source.NextSeed());
}
