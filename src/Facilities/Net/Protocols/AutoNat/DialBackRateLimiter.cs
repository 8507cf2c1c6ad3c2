using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>
/// Sliding-window counts of dial-backs, per peer and in all. Holds at most the global limit's
/// worth of entries, since only granted dial-backs are recorded.
/// </summary>
internal sealed class DialBackRateLimiter(int maxPerPeer, int maxTotal, TimeSpan window, TimeProvider time)
{
    private readonly Queue<(long Timestamp, PeerId Peer)> _granted = new();
    private readonly Dictionary<PeerId, int> _perPeer = [];

    /// <summary>Records a dial-back for <paramref name="peer"/>, or says which limit it would pass.</summary>
    public bool TryAcquire(PeerId peer, out string? refusal)
    {
        lock (_granted)
        {
            var now = time.GetTimestamp();
            while (_granted.TryPeek(out var oldest) && time.GetElapsedTime(oldest.Timestamp, now) >= window)
            {
                _granted.Dequeue();
                if (--_perPeer[oldest.Peer] == 0) _perPeer.Remove(oldest.Peer);
            }
            var ofPeer = _perPeer.GetValueOrDefault(peer);
            refusal = ofPeer >= maxPerPeer ? $"{maxPerPeer} dial-backs for this peer within {window} (the limit per peer)"
                : _granted.Count >= maxTotal ? $"{maxTotal} dial-backs within {window} (the server's limit)"
                : null;
            if (refusal is not null) return false;
            _granted.Enqueue((now, peer));
            _perPeer[peer] = ofPeer + 1;
            return true;
        }
    }
}
