namespace P2PInference.Facilities.Dht;

/// <summary>
/// Decides when a store that is about to refuse a write (full, or the writer at its quota) may first
/// scan itself for expired entries. Without a bound, a flood of writes that are refused anyway made
/// each one a scan of the whole store under its lock. A scan runs only when something may have
/// expired since the last one (<see cref="NoteExpiry"/> keeps the earliest expiry seen, a lower bound)
/// and at most once per <see cref="MinInterval"/> of the store's clock; the timed sweep still runs
/// as before. Not thread-safe: used under its store's lock.
/// </summary>
internal sealed class RefusalSweepGate
{
    /// <summary>
    /// An expired entry holds its place against a refused write at most this much longer; a flood of
    /// refused writes costs one scan per interval instead of one per write.
    /// </summary>
    public static readonly TimeSpan MinInterval = TimeSpan.FromSeconds(1);

    private DateTimeOffset _lastSweep = DateTimeOffset.MinValue;
    private DateTimeOffset _earliestExpiry = DateTimeOffset.MaxValue;

    /// <summary>Whole-store scans run so far, timed or before a refusal: a diagnostic.</summary>
    public long Sweeps { get; private set; }

    /// <summary>An entry that expires at <paramref name="expires"/> was stored.</summary>
    public void NoteExpiry(DateTimeOffset expires)
    {
        if (expires < _earliestExpiry) _earliestExpiry = expires;
    }

    /// <summary>Whether a write about to be refused at <paramref name="now"/> should scan the store first.</summary>
    public bool AllowsSweep(DateTimeOffset now) => _earliestExpiry <= now && now - _lastSweep >= MinInterval;

    /// <summary>A scan ran at <paramref name="now"/>; <paramref name="earliestRemaining"/> is the earliest expiry it left.</summary>
    public void Swept(DateTimeOffset now, DateTimeOffset earliestRemaining)
    {
        Sweeps++;
        _lastSweep = now;
        _earliestExpiry = earliestRemaining;
    }
}
