using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Trust;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Gateway;
using P2PInference.Workers.Processor;

namespace P2PInference.Workers.Hosting;

/// <summary>A worker's validated configuration, per section, as <see cref="WorkerConfiguration.Load"/> returns it.</summary>
public sealed class WorkerSettings
{
    public required WorkerRole Role { get; init; }

    public required NodeSettings Node { get; init; }

    public required DhtSettings Dht { get; init; }

    public required RpcSettings Rpc { get; init; }

    public HostSettings Host { get; init; } = new();

    public required AuthOptions Auth { get; init; }

    public required GatewayOptions Gateway { get; init; }

    public required ProcessorOptions Processor { get; init; }

    public TrustSettings Trust { get; init; } = new();

    public NatSettings Nat { get; init; } = new();

    /// <summary><see cref="NatSettings.Relays"/>, parsed.</summary>
    public IReadOnlyList<Multiaddress> RelayAddresses { get; init; } = [];

    /// <summary>The merged configuration, for sections other components read.</summary>
    public required IConfiguration Configuration { get; init; }

    /// <summary>The data directory, absolute.</summary>
    public required string DataDirectory { get; init; }

    public required IReadOnlyList<Multiaddress> ListenAddresses { get; init; }

    public required IReadOnlyList<Multiaddress> BootstrapPeers { get; init; }

    public WorkerRuntimeOptions ToRuntimeOptions(TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null) => new()
    {
        Role = Role,
        DataDirectory = DataDirectory,
        ListenAddresses = ListenAddresses,
        BootstrapPeers = BootstrapPeers,
        DhtProtocolId = Dht.ProtocolId,
        DhtMode = Dht.Mode,
        Dht = new KademliaDhtOptions
        {
            ProviderRecordTtl = Dht.ProviderRecordTtl,
            QueryTimeout = Dht.QueryTimeout,
            LookupTimeout = Dht.LookupTimeout,
            RefreshInterval = Dht.RefreshInterval,
        },
        Rpc = new RpcOptions
        {
            MaxMessageSize = Rpc.MaxMessageSize,
            MaxConcurrentCallsPerPeer = Rpc.MaxConcurrentCallsPerPeer,
            MaxInFlightBytesPerPeer = Rpc.MaxInFlightBytesPerPeer,
            DefaultTimeout = Rpc.DefaultTimeout,
            RequestReadTimeout = Rpc.RequestReadTimeout,
            TopicCacheTtl = Rpc.TopicCacheTtl,
            MaxTopicAttempts = Rpc.MaxTopicAttempts,
            DirectConnectionWait = Rpc.DirectConnectionWait,
            BulkMethods = RpcSettings.BulkMethods,
        },
        Host = Host,
        Nat = Nat,
        RelayAddresses = RelayAddresses,
        DrainTimeout = Node.DrainTimeout,
        Grant = LoadGrant(),
        GrantPath = Trust.Grant,
        ClusterKey = Trust.Grant is null ? LoadClusterKey() : null,
        RevocationListPath = Trust.RevocationList,
        GrantCachePeriod = Trust.CachePeriod,
        SelfGrantValidity = Trust.SelfGrantValidity,
        TimeProvider = timeProvider ?? TimeProvider.System,
        LoggerFactory = loggerFactory ?? NullLoggerFactory.Instance,
    };

    /// <exception cref="WorkerConfigurationException">The grant file is missing or not a grant.</exception>
    private RoleGrant? LoadGrant()
    {
        if (Trust.Grant is not { } path) return null;
        try
        {
            return RoleGrant.FromText(OperatorFile.ReadAllText(path, RoleGrant.MaxFileBytes, "grant file"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or InvalidDataException)
        {
            throw new WorkerConfigurationException([$"Trust:Grant: {e.Message}"], e);
        }
    }

    /// <exception cref="WorkerConfigurationException">The key file is missing or not a key.</exception>
    private ClusterKey? LoadClusterKey()
    {
        if (Trust.ClusterKey is not { } path) return null;
        try
        {
            return Facilities.Trust.ClusterKey.Load(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new WorkerConfigurationException([$"Trust:ClusterKey: {e.Message}"], e);
        }
    }
}
