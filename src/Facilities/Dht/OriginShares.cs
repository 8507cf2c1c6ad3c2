using System.Diagnostics;

namespace P2PInference.Facilities.Dht;

/// <summary>
/// The bytes a store holds for each origin its writes came from (<see cref="Addressing.AddressOrigin"/>
/// of the sender's connection), bounded per origin: identities cost nothing to make, so a per-peer quota
/// alone lets one machine fill a store's byte budget by cycling identities, and then every honest write is
/// refused until the flood's records expire. With a share per origin, filling a store takes as many
/// addresses as shares fit in it. Writes with no origin (our own, or from a connection whose address says
/// nothing about the sender) are not counted. Not thread-safe: used under its store's lock.
/// </summary>
internal sealed class OriginShares(long maxBytesPerOrigin)
{
    private readonly Dictionary<string, long> _bytes = new(StringComparer.Ordinal);

    /// <summary>Origins that hold bytes: a diagnostic, and how tests see that every charge is given back.</summary>
    public int Count => _bytes.Count;

    public long Of(string origin) => _bytes.GetValueOrDefault(origin);

    /// <summary>
    /// Whether <paramref name="origin"/> may hold <paramref name="cost"/> more bytes once
    /// <paramref name="released"/> bytes it holds for the write's predecessor are given back.
    /// </summary>
    public bool Admits(string? origin, long cost, long released = 0) =>
        origin is null || _bytes.GetValueOrDefault(origin) - released + cost <= maxBytesPerOrigin;

    public void Charge(string? origin, long cost)
    {
        if (origin is null) return;
        _bytes[origin] = _bytes.GetValueOrDefault(origin) + cost;
    }

    public void Release(string? origin, long cost)
    {
        if (origin is null) return;
        var left = _bytes.GetValueOrDefault(origin) - cost;
        Debug.Assert(left >= 0, "an origin's bytes are given back once");
        if (left > 0) _bytes[origin] = left;
        else _bytes.Remove(origin);
    }
}
