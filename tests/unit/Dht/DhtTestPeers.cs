using P2PInference.Facilities.Identity;

namespace P2PInference.Tests.Unit.Dht;

/// <summary>Peer ids for DHT tests, generated once: key generation dominates otherwise.</summary>
internal static class DhtTestPeers
{
    private static readonly Lazy<PeerId[]> Pool = new(() => Enumerable.Range(0, 400).Select(_ => KeyPair.Generate().PeerId).ToArray());

    public static PeerId[] Take(int count) => Pool.Value[..count];

    public static PeerId Get(int index) => Pool.Value[index];
}
