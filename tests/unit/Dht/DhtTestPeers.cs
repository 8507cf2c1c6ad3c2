using P2PInference.Facilities.Identity;

namespace P2PInference.Tests.Unit.Dht;

/// <summary>Peer ids for DHT tests, generated once: key generation dominates otherwise.</summary>
internal static class DhtTestPeers
{
    // The same 400 peers in every run: the tests' topology (who is closest to a target) is then fixed,
    // and a test seed replays what a test draws from it. Fresh keys per process once made a lookup
    // test's premise fail in a rare pool that no seed could replay.
    private static readonly Lazy<PeerId[]> Pool = new(() =>
    {
        var random = new Random(400);
        return Enumerable.Range(0, 400).Select(_ => KeyPair.FromRandom(random).PeerId).ToArray();
    });

    public static PeerId[] Take(int count) => Pool.Value[..count];

    public static PeerId Get(int index) => Pool.Value[index];
}
