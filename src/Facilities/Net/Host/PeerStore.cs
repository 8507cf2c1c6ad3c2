using System.Collections.Concurrent;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Host;

/// <summary>What a host knows of other peers: addresses to dial, protocols, agent. Bounded.</summary>
public sealed class PeerStore
{
    public const int MaxAddressesPerPeer = 32;
    public const int MaxProtocolsPerPeer = 128;

    private readonly ConcurrentDictionary<PeerId, PeerRecord> _peers = new();
    private readonly int _capacity;

    public PeerStore(int capacity = 100_000) => _capacity = capacity;

    public int Count => _peers.Count;

    public IEnumerable<PeerId> Peers => _peers.Keys;

    /// <summary>Raised after a peer's protocol list is set (identify finished), so a protocol like kad can adopt it.</summary>
    public event Action<PeerId>? ProtocolsUpdated;

    /// <summary>Adds dialable addresses (any /p2p suffix removed). Ignored for unknown peers once the store is full.</summary>
    public void AddAddresses(PeerId peer, IEnumerable<Multiaddress> addresses)
    {
        var record = GetOrCreate(peer);
        if (record is null) return;
        lock (record)
        {
            foreach (var address in addresses)
            {
                var plain = address.WithoutPeerId();
                if (plain.Components.Count == 0 || record.Addresses.Contains(plain)) continue;
                if (record.Addresses.Count >= MaxAddressesPerPeer) record.Addresses.RemoveAt(0);
                record.Addresses.Add(plain);
            }
        }
    }

    public IReadOnlyList<Multiaddress> GetAddresses(PeerId peer)
    {
        if (!_peers.TryGetValue(peer, out var record)) return [];
        lock (record) return record.Addresses.ToArray();
    }

    public void SetProtocols(PeerId peer, IEnumerable<string> protocols, string? agentVersion)
    {
        var record = GetOrCreate(peer);
        if (record is null) return;
        lock (record)
        {
            record.Protocols = protocols.Take(MaxProtocolsPerPeer).ToArray();
            record.AgentVersion = agentVersion;
        }
        ProtocolsUpdated?.Invoke(peer);
    }

    public IReadOnlyList<string> GetProtocols(PeerId peer)
    {
        if (!_peers.TryGetValue(peer, out var record)) return [];
        lock (record) return record.Protocols;
    }

    public string? GetAgentVersion(PeerId peer)
    {
        if (!_peers.TryGetValue(peer, out var record)) return null;
        lock (record) return record.AgentVersion;
    }

    public bool Remove(PeerId peer) => _peers.TryRemove(peer, out _);

    private PeerRecord? GetOrCreate(PeerId peer)
    {
        if (_peers.TryGetValue(peer, out var existing)) return existing;
        if (_peers.Count >= _capacity) return null;
        return _peers.GetOrAdd(peer, _ => new PeerRecord());
    }

    private sealed class PeerRecord
    {
        public List<Multiaddress> Addresses { get; } = [];
        public IReadOnlyList<string> Protocols { get; set; } = [];
        public string? AgentVersion { get; set; }
    }
}
