using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Harness;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Gateway;
using P2PInference.Workers.Hosting;
using P2PInference.Workers.Processor;

namespace P2PInference.Tests.E2E.Workers;

/// <summary>How a <see cref="WorkerCluster"/> is built; the defaults are a quick, roomy network. The seed is the simulation's.</summary>
internal sealed class WorkerClusterOptions
{
    /// <summary>How many processors (<c>processor-1</c>…); 2 by default.</summary>
    public int Processors { get; init; } = 2;

    /// <summary>The Auth worker's options, built anew for each start (the low iteration count keeps PBKDF2 quick).</summary>
    public Func<AuthOptions> Auth { get; init; } = () => new AuthOptions
    {
        PasswordIterations = AuthOptions.MinPasswordIterations,
        DefaultQuota = new AuthQuota { RequestsPerMinute = 600, Burst = 100 },
    };

    /// <summary>How many gateways (<c>gateway</c>, then <c>gateway-2</c>…); 1 by default.</summary>
    public int Gateways { get; init; } = 1;

    public Func<GatewayOptions> Gateway { get; init; } = () => new GatewayOptions { DefaultModel = WorkerCluster.Model };

    public Func<ProcessorOptions> Processor { get; init; } = () => new ProcessorOptions();

    /// <summary>Provider records of the DHT live this long (re-announced at half of it).</summary>
    public TimeSpan ProviderRecordTtl { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>The DHT refreshes its routing table this often.</summary>
    public TimeSpan DhtRefreshInterval { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Puts nodes (processors by default) behind NAT routers and adds a relay node; every worker then runs
    /// its NAT service (<see cref="WorkerNat"/>: AutoNAT, relay reservations) with <see cref="NatSettings"/>.
    /// Null: every node is public and no worker runs it.
    /// </summary>
    public TestNatOptions? Nat { get; init; }

    /// <summary>The workers' <c>Nat</c> section when <see cref="Nat"/> is set: quick to give up on AutoNAT and to look for relays.</summary>
    public Func<NatSettings> NatSettings { get; init; } = () => new NatSettings
    {
        UnknownReachabilityGrace = TimeSpan.FromSeconds(30),
        RelaySearchInterval = TimeSpan.FromSeconds(30),
    };

    /// <summary>Peers that claim a role without holding a valid grant for it (nodes named after them, with role <c>rogue</c>).</summary>
    public IReadOnlyList<RogueSpec> Rogues { get; init; } = [];
}

/// <summary>
/// A rogue node: <paramref name="Name"/>, the <paramref name="Topics"/> it announces and the grant it
/// presents (made from the cluster and its own PeerId; null: none). A <paramref name="Silent"/> one never
/// answers the grant query at all.
/// </summary>
internal sealed record RogueSpec(string Name, IReadOnlyList<string> Topics, Func<TestCluster, PeerId, RoleGrant?> Grant, bool Silent = false);
