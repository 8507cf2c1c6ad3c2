using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Store;
using Microsoft.Extensions.Logging;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// The real facilities: FASTER store, a <see cref="P2PHost"/> on the configured transports (TCP, or
/// the in-memory network in tests) with circuit relay in front, a <see cref="KademliaDht"/>, the
/// node's <see cref="WorkerNat"/> (AutoNAT, relays) and an <see cref="RpcNode"/>.
/// </summary>
public sealed class Libp2pWorkerFacilities : IWorkerFacilities
{
    private readonly WorkerRuntimeOptions _options;
    private IKeyValueStore? _store;
    private P2PHost? _host;
    private KademliaDht? _dht;
    private CircuitRelayTransport? _circuit;
    private WorkerNat? _nat;
    private RpcNode? _rpc;

    public Libp2pWorkerFacilities(WorkerRuntimeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
    }

    /// <summary>The host, once the network started; null before and after.</summary>
    public P2PHost? Host => _host;

    public KademliaDht? Dht => _dht;

    /// <summary>AutoNAT and the relay reservations, once discovery started; null before and after.</summary>
    public WorkerNat? Nat => _nat;

    public async Task<IKeyValueStore> OpenStoreAsync(string directory, CancellationToken cancellationToken)
    {
        _store = _options.StoreFactory is { } factory
            ? await factory(directory, cancellationToken)
            : await FailClosedKeyValueStore.OpenAsync(new FasterStoreOptions
            {
                DataDirectory = directory,
                // Workers keep small records (users, keys); the 64 MiB default is for bulk stores.
                MemorySizeBytes = 8L << 20,
                ExpectedKeyCount = 1L << 16,
                TimeProvider = _options.TimeProvider,
                Logger = _options.LoggerFactory.CreateLogger<FasterKeyValueStore>(),
            }, retryInterval: null, cancellationToken);
        return _store;
    }

    public async Task<IReadOnlyList<Multiaddress>> StartNetworkAsync(KeyPair identity, CancellationToken cancellationToken)
    {
        var limits = _options.Host;
        var transports = _options.TransportFactory(identity);
        // A factory of the caller's own does not see the setting; run without it and the load balancer's headers would fail every connection.
        if (limits.ProxyProtocol && !transports.OfType<TcpTransport>().Any(t => t.ProxyProtocol))
            throw new InvalidOperationException("Host:ProxyProtocol is set, but no TCP transport of this node expects the PROXY protocol");
        _circuit = transports.OfType<CircuitRelayTransport>().FirstOrDefault();
        if (_circuit is null)
        {
            // First: the host takes the first transport that can dial an address, and TCP would take a circuit address for its own.
            _circuit = new CircuitRelayTransport(new CircuitRelayOptions { LoggerFactory = _options.LoggerFactory });
            transports = [_circuit, .. transports];
        }
        _host = new P2PHost(new HostOptions
        {
            Identity = identity,
            Transports = transports,
            MaxInboundConnections = limits.MaxInboundConnections,
            MaxInboundConnectionsPerAddress = limits.MaxInboundConnectionsPerAddress,
            InboundConnectionsReservedForNewAddresses = limits.InboundConnectionsReservedForNewAddresses,
            InboundConnectionsReservedForTrustedPeers = limits.InboundConnectionsReservedForTrustedPeers,
            MaxConnectionsPerPeer = limits.MaxConnectionsPerPeer,
            MaxKnownPeers = limits.MaxKnownPeers,
            UpgradeTimeout = limits.UpgradeTimeout,
            StreamNegotiationTimeout = limits.StreamNegotiationTimeout,
            IdentifyTimeout = limits.IdentifyTimeout,
            PingTimeout = limits.PingTimeout,
            IdleConnectionTimeout = limits.IdleConnectionTimeout,
            InboundPeersArePublic = limits.InboundPeersArePublic,
            AnnounceAddresses = limits.AnnounceMultiaddresses(),
            TimeProvider = _options.TimeProvider,
            RandomSource = _options.RandomSource,
            LoggerFactory = _options.LoggerFactory,
        });
        await _host.StartAsync(_options.ListenAddresses, cancellationToken);
        return _host.AdvertisedAddresses;
    }

    public void KeepInboundCapacityFor(Func<PeerId, CancellationToken, ValueTask<bool>> isTrusted) =>
        (_host ?? throw new InvalidOperationException("the network is not started")).KeepInboundCapacityFor(isTrusted);

    public async Task<IDiscovery> StartDiscoveryAsync(CancellationToken cancellationToken)
    {
        var host = _host ?? throw new InvalidOperationException("the network is not started");
        var d = _options.Dht;
        _dht = new KademliaDht(host, new KademliaDhtOptions
        {
            ProtocolId = _options.DhtProtocolId,
            Mode = _options.DhtMode,
            BootstrapPeers = _options.BootstrapPeers,
            K = d.K,
            Alpha = d.Alpha,
            ProviderRecordTtl = d.ProviderRecordTtl,
            ReannounceInterval = d.ReannounceInterval,
            RecordTtl = d.RecordTtl,
            RefreshInterval = d.RefreshInterval,
            SweepInterval = d.SweepInterval,
            QueryTimeout = d.QueryTimeout,
            LookupTimeout = d.LookupTimeout,
            InboundIdleTimeout = d.InboundIdleTimeout,
            MaxProvidersPerLookup = d.MaxProvidersPerLookup,
            MaxMessageSize = d.MaxMessageSize,
            RandomSeed = _options.RandomSeed ?? d.RandomSeed,
            TimeProvider = _options.TimeProvider,
            LoggerFactory = _options.LoggerFactory,
        });
        await _dht.StartAsync(cancellationToken);
        var discovery = new ReannouncingDiscovery(_dht);
        _nat = new WorkerNat(host, discovery, _circuit, new WorkerNatOptions
        {
            Settings = _options.Nat,
            Relays = _options.RelayAddresses,
            AddressesChanged = discovery.ReannounceAsync,
            LoggerFactory = _options.LoggerFactory,
        });
        await _nat.StartAsync(cancellationToken);
        return discovery;
    }

    public Task<(IRpcServer Server, IRpcClient Client)> StartRpcAsync(IDiscovery discovery, CancellationToken cancellationToken)
    {
        var host = _host ?? throw new InvalidOperationException("the network is not started");
        _rpc = new RpcNode(host, _options.Rpc with { TimeProvider = _options.TimeProvider, RandomSource = _options.RandomSource, LoggerFactory = _options.LoggerFactory }, discovery);
        return Task.FromResult<(IRpcServer, IRpcClient)>((_rpc, _rpc));
    }

    public async Task StopRpcAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _rpc, null) is { } rpc) await rpc.DisposeAsync();
    }

    public async Task StopDiscoveryAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _nat, null) is { } nat) await nat.DisposeAsync();
        if (Interlocked.Exchange(ref _dht, null) is { } dht) await dht.DisposeAsync();
    }

    public async Task StopNetworkAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _host, null) is { } host) await host.DisposeAsync();
    }

    public async Task CloseStoreAsync(CancellationToken cancellationToken)
    {
        switch (Interlocked.Exchange(ref _store, null))
        {
            case IAsyncDisposable asyncDisposable:
                await asyncDisposable.DisposeAsync();
                break;
            case IDisposable disposable:
                disposable.Dispose();
                break;
        }
    }
}
