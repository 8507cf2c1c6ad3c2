using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Protocols.AutoNat;

namespace P2PInference.Workers.Hosting;

/// <summary>What a <see cref="WorkerNat"/> runs with: the <c>Nat</c> section and the hooks of its host.</summary>
public sealed class WorkerNatOptions
{
    public NatSettings Settings { get; init; } = new();

    /// <summary><see cref="NatSettings.Relays"/>, parsed; each ends in <c>/p2p/&lt;PeerId&gt;</c>.</summary>
    public IReadOnlyList<Multiaddress> Relays { get; init; } = [];

    /// <summary>Called after the node's listen addresses changed (a reservation made or dropped), so its provider records are announced again with them.</summary>
    public Func<CancellationToken, Task>? AddressesChanged { get; init; }

    /// <summary>The AutoNAT client's timing and thresholds; its defaults when null (the logger is always this one's).</summary>
    public AutoNatClientOptions? AutoNatClient { get; init; }

    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;
}
