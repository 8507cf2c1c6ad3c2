using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Store;
using P2PInference.Facilities.Trust;

namespace P2PInference.Workers.Hosting;

/// <summary>What a <see cref="WorkerRuntime"/> runs on. Only <see cref="Role"/> and <see cref="DataDirectory"/> are required.</summary>
public sealed class WorkerRuntimeOptions
{
    public const string IdentityFileName = "identity.key";
    public const string StoreDirectoryName = "store";

    public static readonly TimeSpan DefaultDrainTimeout = TimeSpan.FromSeconds(10);

    public required WorkerRole Role { get; init; }

    /// <summary>Holds the identity key (<see cref="IdentityFileName"/>) and the store (<see cref="StoreDirectoryName"/>), so a restart keeps both.</summary>
    public required string DataDirectory { get; init; }

    public IReadOnlyList<Multiaddress> ListenAddresses { get; init; } = [Multiaddress.Parse("/ip4/127.0.0.1/tcp/0")];

    /// <summary>DHT peers dialed at start; each ends in <c>/p2p/&lt;PeerId&gt;</c>.</summary>
    public IReadOnlyList<Multiaddress> BootstrapPeers { get; init; } = [];

    public string DhtProtocolId { get; init; } = KademliaDhtOptions.DefaultProtocolId;

    public DhtMode DhtMode { get; init; } = DhtMode.Server;

    /// <summary>Further DHT settings (timeouts, TTLs); identity-independent fields only — the runtime sets mode, protocol, bootstrap peers, time and logging.</summary>
    public KademliaDhtOptions Dht { get; init; } = new();

    /// <summary>RPC limits; the runtime supplies its <see cref="TimeProvider"/> and <see cref="LoggerFactory"/>.</summary>
    public RpcOptions Rpc { get; init; } = new();

    /// <summary>The host's connection caps and timeouts.</summary>
    public HostSettings Host { get; init; } = new();

    /// <summary>AutoNAT and circuit relays (<see cref="WorkerNat"/>).</summary>
    public NatSettings Nat { get; init; } = new();

    /// <summary><see cref="NatSettings.Relays"/>, parsed: relays to reserve on when unreachable.</summary>
    public IReadOnlyList<Multiaddress> RelayAddresses { get; init; } = [];

    /// <summary>How long calls in flight may run on after a stop began; then they are cancelled (callers get Unavailable).</summary>
    public TimeSpan DrainTimeout { get; init; } = DefaultDrainTimeout;

    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;

    /// <summary>
    /// The transports of the node's host; tests hand it the in-memory network's. Default: TCP, expecting the PROXY
    /// protocol on inbound connections (from <see cref="HostSettings.ProxyProtocolSources"/>) when <see cref="HostSettings.ProxyProtocol"/> says so.
    /// </summary>
    public Func<KeyPair, IReadOnlyList<ITransport>> TransportFactory
    {
        get => _transportFactory ?? DefaultTransports;
        init => _transportFactory = value;
    }

    private readonly Func<KeyPair, IReadOnlyList<ITransport>>? _transportFactory;

    private IReadOnlyList<ITransport> DefaultTransports(KeyPair identity) =>
        [new TcpTransport(new TcpTransportOptions { ProxyProtocol = Host.ProxyProtocol, ProxyProtocolSources = Host.ProxyProtocolNetworks() })];

    /// <summary>Opens the store in the given directory; tests hand it a RAM store. Default: FASTER on disk.</summary>
    public Func<string, CancellationToken, Task<IKeyValueStore>>? StoreFactory { get; init; }

    /// <summary>Seed of the worker's <see cref="WorkerContext.Random"/>; null picks one.</summary>
    public int? RandomSeed { get; init; }

    public string IdentityPath => Path.Combine(DataDirectory, IdentityFileName);

    public string StorePath => Path.Combine(DataDirectory, StoreDirectoryName);

    /// <summary>
    /// Source of the node's unpredictable bytes: a new identity key, Noise keys, trace ids, the
    /// worker's <see cref="WorkerContext.RandomSource"/>, and the seed of <see cref="WorkerContext.Random"/>
    /// when <see cref="RandomSeed"/> is null. The system CSPRNG; seeded only in simulations.
    /// </summary>
    public IRandomSource RandomSource { get; init; } = SystemRandomSource.Instance;

    /// <summary>A pre-issued grant for this node's PeerId and role (auth, gateway and processor need it or <see cref="ClusterKey"/>).</summary>
    public RoleGrant? Grant { get; init; }

    /// <summary>The file <see cref="Grant"/> came from: reread while the worker runs, so the operator can hand it a new grant before this one expires.</summary>
    public string? GrantPath { get; init; }

    /// <summary>The cluster key: the worker signs its own grant at start, valid for <see cref="SelfGrantValidity"/>. Ignored when <see cref="Grant"/> is set.</summary>
    public ClusterKey? ClusterKey { get; init; }

    /// <summary>The operator's revocation list file, reread every <see cref="GrantCachePeriod"/>; null: nothing revoked.</summary>
    public string? RevocationListPath { get; init; }

    /// <summary>How long a grant another peer presented is believed before it is asked again.</summary>
    public TimeSpan GrantCachePeriod { get; init; } = TimeSpan.FromSeconds(30);

    public TimeSpan SelfGrantValidity { get; init; } = TimeSpan.FromDays(365);

    /// <summary>
    /// The baseline of the grant-cost benchmark only: the worker still holds and presents its grant
    /// (so checking clients accept it), but its calls neither check the callee's grant nor carry its
    /// own, and Auth and processors serve any caller. Internal and set by no setting, flag or public
    /// option (a unit test holds to that), so everything shipped checks grants.
    /// </summary>
    internal bool GrantChecksOffForBenchmark { get; init; }

    internal int EffectiveSeed => RandomSeed ?? RandomSource.NextSeed();

    internal void Validate()
    {
        if (!Enum.IsDefined(Role)) throw new ArgumentOutOfRangeException(nameof(Role), Role, "unknown role");
        ArgumentException.ThrowIfNullOrWhiteSpace(DataDirectory);
        ArgumentNullException.ThrowIfNull(ListenAddresses);
        ArgumentNullException.ThrowIfNull(BootstrapPeers);
        ArgumentException.ThrowIfNullOrEmpty(DhtProtocolId);
        ArgumentNullException.ThrowIfNull(Dht);
        ArgumentNullException.ThrowIfNull(Rpc);
        ArgumentOutOfRangeException.ThrowIfLessThan(DrainTimeout, TimeSpan.Zero);
        ArgumentNullException.ThrowIfNull(TimeProvider);
        ArgumentNullException.ThrowIfNull(RandomSource);
        ArgumentNullException.ThrowIfNull(LoggerFactory);
        ArgumentNullException.ThrowIfNull(TransportFactory);
        foreach (var peer in BootstrapPeers)
        {
            if (peer.PeerId is null) throw new ArgumentException($"bootstrap address {peer} lacks /p2p/<PeerId>", nameof(BootstrapPeers));
        }
    }
}
