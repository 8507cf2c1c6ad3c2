using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>
/// Sliding-window counts of dial-backs: per peer, per requester address (PeerIds cost nothing to
/// mint, addresses do), and in all. Holds at most the global limit's worth of entries, since only
/// granted dial-backs are recorded.
/// </summary>
internal sealed class DialBackRateLimiter(int maxPerPeer, int maxPerAddress, int maxTotal, TimeSpan window, TimeProvider time)
{
    private readonly Queue<(long Timestamp, PeerId Peer, string Address)> _granted = new();
    private readonly Dictionary<PeerId, int> _perPeer = [];
    private readonly Dictionary<string, int> _perAddress = new(StringComparer.Ordinal);

    /// <summary>Records a dial-back for <paramref name="peer"/> seen at <paramref name="address"/>, or says which limit it would pass.</summary>
    /// <param name="address">The requester's host as <see cref="AddressOrigin.Of"/> gives it.</param>
    public bool TryAcquire(PeerId peer, string address, out string? refusal)
    {
        lock (_granted)
        {
            var now = time.GetTimestamp();
            while (_granted.TryPeek(out var oldest) && time.GetElapsedTime(oldest.Timestamp, now) >= window)
            {
                _granted.Dequeue();
                if (--_perPeer[oldest.Peer] == 0) _perPeer.Remove(oldest.Peer);
                if (--_perAddress[oldest.Address] == 0) _perAddress.Remove(oldest.Address);
            }
            var ofPeer = _perPeer.GetValueOrDefault(peer);
            var ofAddress = _perAddress.GetValueOrDefault(address);
            refusal = ofPeer >= maxPerPeer ? $"{maxPerPeer} dial-backs for this peer within {window} (the limit per peer)"
                : ofAddress >= maxPerAddress ? $"{maxPerAddress} dial-backs for peers at {address} within {window} (the limit per address)"
                : _granted.Count >= maxTotal ? $"{maxTotal} dial-backs within {window} (the server's limit)"
                : null;
            if (refusal is not null) return false;
            _granted.Enqueue((now, peer, address));
            _perPeer[peer] = ofPeer + 1;
            _perAddress[address] = ofAddress + 1;
            return true;
        }
    }
}
