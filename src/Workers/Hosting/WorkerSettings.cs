using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Rpc;
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

    public required AuthOptions Auth { get; init; }

    public required GatewayOptions Gateway { get; init; }

    public required ProcessorOptions Processor { get; init; }

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
            DefaultTimeout = Rpc.DefaultTimeout,
            RequestReadTimeout = Rpc.RequestReadTimeout,
            TopicCacheTtl = Rpc.TopicCacheTtl,
            MaxTopicAttempts = Rpc.MaxTopicAttempts,
        },
        DrainTimeout = Node.DrainTimeout,
        TimeProvider = timeProvider ?? TimeProvider.System,
        LoggerFactory = loggerFactory ?? NullLoggerFactory.Instance,
    };
}
