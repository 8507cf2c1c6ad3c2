using P2PInference.Facilities.Addressing;

namespace P2PInference.Facilities.Net.Host;

/// <summary>
/// Admits inbound connections before any handshake work: at most
/// <see cref="HostOptions.MaxInboundConnections"/> in all, at most
/// <see cref="HostOptions.MaxInboundConnectionsPerAddress"/> from one remote address (its IP, or the
/// first component of a non-IP address), and the last
/// <see cref="HostOptions.InboundConnectionsReservedForNewAddresses"/> slots only for addresses that
/// hold none yet — so a flood from a few addresses cannot take the slots a new peer needs. A slot
/// among the last <see cref="HostOptions.InboundConnectionsReservedForTrustedPeers"/> is marked, and
/// the host keeps such a connection only if its peer proves trusted once the handshake names it.
/// </summary>
/// <remarks>
/// Loopback addresses are exempt from the per-address cap and the reserve (not from the total):
/// every process on the machine shares them, and they are the operator's own.
/// </remarks>
internal sealed class InboundConnectionLimiter(HostOptions options)
{
    private readonly Dictionary<string, int> _byAddress = new(StringComparer.Ordinal);
    private int _total;

    // A host configured with few slots keeps at most a quarter of them back, so it still admits repeat addresses.
    private int Reserve => Math.Min(options.InboundConnectionsReservedForNewAddresses, options.MaxInboundConnections / 4);

    private int TrustedReserve => Math.Min(options.InboundConnectionsReservedForTrustedPeers, options.MaxInboundConnections / 4);

    public int Count
    {
        get
        {
            lock (_byAddress) return _total;
        }
    }

    /// <summary>Takes a slot for a connection from <paramref name="remote"/>, or says why not.</summary>
    /// <param name="keepTrustedReserve">Whether the host has a trusted-peer check, so that the trusted reserve applies.</param>
    /// <param name="inTrustedReserve">The slot is one of those kept for trusted peers: the peer must prove it is one.</param>
    public bool TryAcquire(Multiaddress remote, bool keepTrustedReserve, out string key, out bool inTrustedReserve, out string? refusal)
    {
        inTrustedReserve = false;
        key = AddressOrigin.Of(remote, out var loopback);
        lock (_byAddress)
        {
            var fromAddress = _byAddress.GetValueOrDefault(key);
            refusal = _total >= options.MaxInboundConnections
                ? $"{options.MaxInboundConnections} inbound connections are open"
                : loopback ? null
                : fromAddress >= options.MaxInboundConnectionsPerAddress
                    ? $"{fromAddress} inbound connections from {key} are open (the limit per address)"
                : fromAddress > 0 && _total >= options.MaxInboundConnections - Reserve
                    ? $"the last {Reserve} inbound slots are kept for new addresses"
                : null;
            if (refusal is not null) return false;
            inTrustedReserve = keepTrustedReserve && _total >= options.MaxInboundConnections - TrustedReserve;
            _total++;
            _byAddress[key] = fromAddress + 1;
            return true;
        }
    }

    public void Release(string key)
    {
        lock (_byAddress)
        {
            _total--;
            if (_byAddress.TryGetValue(key, out var count) && count > 1) _byAddress[key] = count - 1;
            else _byAddress.Remove(key);
        }
    }
}
