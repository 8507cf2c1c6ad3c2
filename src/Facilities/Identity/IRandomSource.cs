namespace P2PInference.Facilities.Identity;

/// <summary>
/// Where secret and unpredictable bytes come from: key pairs, Noise ephemeral keys, salts, token ids,
/// ping payloads. Production uses <see cref="SystemRandomSource"/> (the OS CSPRNG); a simulation
/// passes a seeded source so one seed replays every byte — never do that outside a simulation.
/// </summary>
public interface IRandomSource
{
    void Fill(Span<byte> buffer);
}
