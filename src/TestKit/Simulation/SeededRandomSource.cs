using P2PInference.Facilities.Identity;

namespace P2PInference.TestKit.Simulation;

/// <summary>
/// Bytes drawn from a seeded <see cref="Random"/>, so a simulation's keys, nonces and ids replay from
/// its seed. Predictable by design: for simulations and tests only, never for a real node.
/// </summary>
public sealed class SeededRandomSource(Random random) : IRandomSource
{
    private readonly Random _random = random ?? throw new ArgumentNullException(nameof(random));

    public void Fill(Span<byte> buffer) => _random.NextBytes(buffer);
}
