namespace P2PInference.Workers.Hosting;

/// <summary>
/// The <c>Nat</c> section: how a worker learns whether others can reach it (AutoNAT) and, when they
/// cannot, stays reachable through circuit relays (<see cref="WorkerNat"/>).
/// </summary>
public sealed class NatSettings
{
    /// <summary>Run AutoNAT: ask peers to dial us back, and serve their dial-backs (with the server's default limits).</summary>
    public bool AutoNat { get; set; } = true;

    /// <summary>
    /// Dial back loopback and private addresses for peers' AutoNAT checks. Off: reaching a peer on a
    /// private address proves only that it is reachable from our network. On for a private cluster
    /// or one machine.
    /// </summary>
    public bool AutoNatAllowPrivateAddresses { get; set; }

    /// <summary>
    /// Turn relayed connections into direct ones where the NATs allow (DCUtR hole punching, both
    /// roles); the peers then move their traffic, bulk inference included, off the relay.
    /// </summary>
    public bool HolePunching { get; set; } = true;

    /// <summary>Relay for others (circuit relay v2 hop, default limits) and announce it in the DHT under <see cref="WorkerNat.RelayTopic"/>.</summary>
    public bool RelayService { get; set; }

    /// <summary>Relays to reserve on when unreachable, as full multiaddrs ending in <c>/p2p/&lt;PeerId&gt;</c>; tried before discovered ones.</summary>
    public List<string> Relays { get; set; } = [];

    /// <summary>Look relays up in the DHT (providers of <see cref="WorkerNat.RelayTopic"/>) when unreachable.</summary>
    public bool DiscoverRelays { get; set; } = true;

    /// <summary>Relays reserved on at once while unreachable.</summary>
    public int MaxReservations { get; set; } = 2;

    /// <summary>
    /// How long AutoNAT may stay undecided before the worker reserves anyway, as go-libp2p's autorelay
    /// does while reachability is unknown: a node nobody can dial back (no AutoNAT server sees an
    /// address of ours to try) never gets an answer.
    /// </summary>
    public TimeSpan UnknownReachabilityGrace { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>While fewer than <see cref="MaxReservations"/> relays hold a slot for us, look for more this often; also how long a lost reservation may take to come back before another relay replaces it.</summary>
    public TimeSpan RelaySearchInterval { get; set; } = TimeSpan.FromMinutes(1);
}
