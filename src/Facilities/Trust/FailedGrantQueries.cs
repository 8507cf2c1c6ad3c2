using System.Diagnostics.CodeAnalysis;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Trust;

/// <summary>
/// Peers whose grant query failed or timed out, remembered for <see cref="Ttl"/> on the injected clock so
/// that no call waits on them again in that time: anyone can announce a worker topic and then never
/// answer (or be a host that is down), and each query to such a peer costs its caller up to the query's
/// timeout. At most <see cref="Capacity"/> peers are held; a new one past that pushes out the one
/// remembered longest, so a flood of fake providers costs bounded memory.
/// </summary>
internal sealed class FailedGrantQueries
{
    private readonly object _gate = new();
    private readonly TimeProvider _time;
    private readonly Dictionary<PeerId, LinkedListNode<Failure>> _byPeer = [];

    // Oldest first; every entry lives the same TTL, so this is also the order in which they expire.
    private readonly LinkedList<Failure> _byAge = new();

    public FailedGrantQueries(TimeProvider time, TimeSpan ttl, int capacity)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentOutOfRangeException.ThrowIfLessThan(ttl, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _time = time;
        Ttl = ttl;
        Capacity = capacity;
    }

    /// <summary>How long a failure is remembered.</summary>
    public TimeSpan Ttl { get; }

    /// <summary>How many peers are remembered at most.</summary>
    public int Capacity { get; }

    /// <summary>Peers remembered now (expired ones may still count until the next <see cref="Remember"/>).</summary>
    public int Count
    {
        get
        {
            lock (_gate) return _byPeer.Count;
        }
    }

    /// <summary>Remembers that the grant query to <paramref name="peer"/> just failed, saying why in <paramref name="reason"/>.</summary>
    public void Remember(PeerId peer, string reason)
    {
        ArgumentNullException.ThrowIfNull(peer);
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            RemoveLocked(peer);
            while (_byAge.First is { } oldest && (_byPeer.Count >= Capacity || _time.GetElapsedTime(oldest.Value.At, now) >= Ttl))
                RemoveLocked(oldest.Value.Peer);
            _byPeer[peer] = _byAge.AddLast(new Failure(peer, reason, now));
        }
    }

    /// <summary>Why the last grant query to <paramref name="peer"/> failed and how long ago; false when it is not (or no longer) remembered.</summary>
    public bool TryGet(PeerId peer, [NotNullWhen(true)] out string? reason, out TimeSpan age)
    {
        lock (_gate)
        {
            if (_byPeer.TryGetValue(peer, out var node))
            {
                age = _time.GetElapsedTime(node.Value.At);
                if (age < Ttl)
                {
                    reason = node.Value.Reason;
                    return true;
                }
                RemoveLocked(peer);
            }
        }
        reason = null;
        age = default;
        return false;
    }

    /// <summary>Forgets <paramref name="peer"/>'s failure (its grant query has since been answered).</summary>
    public void Forget(PeerId peer)
    {
        lock (_gate) RemoveLocked(peer);
    }

    private void RemoveLocked(PeerId peer)
    {
        if (_byPeer.Remove(peer, out var node)) _byAge.Remove(node);
    }

    private sealed record Failure(PeerId Peer, string Reason, long At);
}
