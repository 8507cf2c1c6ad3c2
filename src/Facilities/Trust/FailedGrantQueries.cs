using System.Diagnostics.CodeAnalysis;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Trust;

/// <summary>
/// Peers whose grant query failed or timed out, skipped for a while on the injected clock so that no call
/// waits on them again in that time: anyone can announce a worker topic and then never answer (or be a
/// host that is down), and each query to such a peer costs its caller up to the query's timeout. At most
/// <see cref="Capacity"/> peers are held; a new one past that pushes out the one remembered longest, so a
/// flood of fake providers costs bounded memory.
/// </summary>
/// <remarks>
/// How long a failure is held depends on what it says. A peer that could not be reached or did not answer
/// in time (<see cref="Remember"/> with <c>backOff</c>) may just have been down: its first failure is held an
/// eighth of <see cref="Ttl"/>, each next one in a row twice as long as the one before, up to <see cref="Ttl"/>,
/// so a peer that comes back is asked again soon, while a silent one costs a caller at most five waits in
/// its first two periods and one a period after that. Only a failure after the last one stopped being held
/// counts as the next in a row: queries that were already under way when the peer failed (concurrent calls
/// each ask it) fail too, and hold it from their own failure, but with the same back-off. Its streak is kept
/// until a success, or two periods without a failure. Any other failure (the peer answered, with an error) is held the whole <see cref="Ttl"/>.
/// </remarks>
internal sealed class FailedGrantQueries
{
    /// <summary>The first back-off is <see cref="Ttl"/> divided by this; each failure in a row doubles it, up to <see cref="Ttl"/>.</summary>
    private const int FirstBackOffDivisor = 8;

    private readonly object _gate = new();
    private readonly TimeProvider _time;
    private readonly Dictionary<PeerId, LinkedListNode<Failure>> _byPeer = [];

    // Oldest first; every entry is kept the same time (its streak's memory), so this is also the order in which they expire.
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

    /// <summary>How long a failure is held at most: a peer that answered with an error, or one that failed often enough in a row.</summary>
    public TimeSpan Ttl { get; }

    /// <summary>How many peers are remembered at most.</summary>
    public int Capacity { get; }

    /// <summary>How long after its last failure a peer's streak is still remembered (and counts against it when it fails again).</summary>
    private TimeSpan StreakMemory => 2 * Ttl;

    /// <summary>Peers remembered now, with a failure held or only a streak kept (expired ones may count until the next <see cref="Remember"/>).</summary>
    public int Count
    {
        get
        {
            lock (_gate) return _byPeer.Count;
        }
    }

    /// <summary>Remembers that the grant query to <paramref name="peer"/> just failed, saying why in <paramref name="reason"/>.</summary>
    /// <param name="backOff">The peer was unreachable or silent (it may have been down): hold it for a back-off that grows with each failure in a row, not the whole <see cref="Ttl"/>.</param>
    public void Remember(PeerId peer, string reason, bool backOff)
    {
        ArgumentNullException.ThrowIfNull(peer);
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            var streak = 1;
            var stillHeld = TimeSpan.Zero;
            if (_byPeer.TryGetValue(peer, out var previous) && _time.GetElapsedTime(previous.Value.At, now) is var since && since < StreakMemory)
            {
                // A failure while the last one is still held does not lengthen the streak: it is a query that started
                // before that failure was known (concurrent calls to a peer each ask it), not another try that failed.
                if (since < previous.Value.Held)
                {
                    streak = previous.Value.Streak;
                    stillHeld = previous.Value.Held - since;
                }
                else
                {
                    streak = previous.Value.Streak + 1;
                }
            }
            RemoveLocked(peer);
            while (_byAge.First is { } oldest && (_byPeer.Count >= Capacity || _time.GetElapsedTime(oldest.Value.At, now) >= StreakMemory))
                RemoveLocked(oldest.Value.Peer);
            // Nor does it shorten the hold it falls in.
            var held = backOff ? BackOff(streak) : Ttl;
            if (held < stillHeld) held = stillHeld;
            _byPeer[peer] = _byAge.AddLast(new Failure(peer, reason, now, held, streak));
        }
    }

    /// <summary>
    /// Why the last grant query to <paramref name="peer"/> failed, how long ago and how long it is held in all;
    /// false when it is not (or no longer) held.
    /// </summary>
    public bool TryGet(PeerId peer, [NotNullWhen(true)] out string? reason, out TimeSpan age, out TimeSpan held)
    {
        lock (_gate)
        {
            if (_byPeer.TryGetValue(peer, out var node))
            {
                age = _time.GetElapsedTime(node.Value.At);
                if (age < node.Value.Held)
                {
                    reason = node.Value.Reason;
                    held = node.Value.Held;
                    return true;
                }
                // Kept for its streak: should the peer fail again, it is held longer.
                if (age >= StreakMemory) RemoveLocked(peer);
            }
        }
        reason = null;
        age = default;
        held = default;
        return false;
    }

    /// <summary>Forgets <paramref name="peer"/>'s failure and streak (its grant query has since been answered).</summary>
    public void Forget(PeerId peer)
    {
        lock (_gate) RemoveLocked(peer);
    }

    /// <summary><see cref="Ttl"/>/8 for the first failure in a row, doubling with each next one, up to <see cref="Ttl"/>.</summary>
    private TimeSpan BackOff(int streak)
    {
        var first = Ttl / FirstBackOffDivisor;
        // Past the fourth doubling the divisor of 8 is spent; the shift stays small whatever the streak.
        var backOff = first * (1L << Math.Min(streak - 1, 4));
        return backOff < Ttl ? backOff : Ttl;
    }

    private void RemoveLocked(PeerId peer)
    {
        if (_byPeer.Remove(peer, out var node)) _byAge.Remove(node);
    }

    private sealed record Failure(PeerId Peer, string Reason, long At, TimeSpan Held, int Streak);
}
