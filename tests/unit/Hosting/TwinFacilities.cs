using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Store;
using P2PInference.TestKit.Discovery;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Store;
using P2PInference.Workers.Hosting;

namespace P2PInference.Tests.Unit.Hosting;

/// <summary>The TestKit twins behind the runtime's facility seam, recording each step in <see cref="Events"/>.</summary>
internal sealed class TwinFacilities(InMemoryRpcNetwork rpcNetwork, MockDhtRegistry registry) : IWorkerFacilities
{
    private readonly List<string> _events = [];
    private RamStore? _store;
    private KeyPair? _identity;
    private MockDht? _dht;
    private InMemoryRpcNode? _rpc;

    public IReadOnlyList<string> Events
    {
        get
        {
            lock (_events) return [.. _events];
        }
    }

    public InMemoryRpcNode? Rpc => _rpc;

    public MockDht? Dht => _dht;

    /// <summary>Thrown by the step of that name ("network", "discovery", "rpc"), to test failed starts.</summary>
    public string? FailAt { get; set; }

    public void Record(string e)
    {
        lock (_events) _events.Add(e);
    }

    public async Task<IKeyValueStore> OpenStoreAsync(string directory, CancellationToken cancellationToken)
    {
        Record("store:open");
        _store = await RamStore.CreateAsync(cancellationToken: cancellationToken);
        return _store;
    }

    public Task<IReadOnlyList<Multiaddress>> StartNetworkAsync(KeyPair identity, CancellationToken cancellationToken)
    {
        Record("network:start");
        Fail("network");
        _identity = identity;
        return Task.FromResult<IReadOnlyList<Multiaddress>>([Multiaddress.Memory("twin").WithPeerId(identity.PeerId)]);
    }

    /// <summary>What the runtime gave the network to decide who may hold the slots kept for trusted peers.</summary>
    public Func<PeerId, CancellationToken, ValueTask<bool>>? TrustedPeerCheck { get; private set; }

    public void KeepInboundCapacityFor(Func<PeerId, CancellationToken, ValueTask<bool>> isTrusted) => TrustedPeerCheck = isTrusted;

    public Task<IDiscovery> StartDiscoveryAsync(CancellationToken cancellationToken)
    {
        Record("discovery:start");
        Fail("discovery");
        _dht = registry.CreateNode(_identity!.PeerId, [Multiaddress.Memory("twin")]);
        return Task.FromResult<IDiscovery>(new RecordingDiscovery(_dht, this));
    }

    public Task<(IRpcServer Server, IRpcClient Client)> StartRpcAsync(IDiscovery discovery, CancellationToken cancellationToken)
    {
        Record("rpc:start");
        Fail("rpc");
        _rpc = rpcNetwork.CreateNode(_identity!.PeerId, new RpcOptions { TimeProvider = rpcNetwork.TimeProvider }, discovery);
        return Task.FromResult<(IRpcServer, IRpcClient)>((_rpc, _rpc));
    }

    /// <summary>When set, stopping RPC waits for it: the twin drops answers not yet read when its node leaves, so a test reads them first.</summary>
    public Task? RpcStopGate { get; set; }

    public async Task StopRpcAsync(CancellationToken cancellationToken)
    {
        if (RpcStopGate is not null) await RpcStopGate.WaitAsync(cancellationToken);
        Record("rpc:stop");
        if (_rpc is not null) await _rpc.DisposeAsync();
    }

    public async Task StopDiscoveryAsync(CancellationToken cancellationToken)
    {
        Record("discovery:stop");
        if (_dht is not null) await _dht.DisposeAsync();
    }

    public Task StopNetworkAsync(CancellationToken cancellationToken)
    {
        Record("network:stop");
        return Task.CompletedTask;
    }

    public async Task CloseStoreAsync(CancellationToken cancellationToken)
    {
        Record("store:close");
        if (_store is not null) await _store.DisposeAsync();
    }

    private void Fail(string step)
    {
        if (FailAt == step) throw new InvalidOperationException($"{step} failed on purpose");
    }

    private sealed class RecordingDiscovery(IDiscovery inner, TwinFacilities owner) : IDiscovery
    {
        public Task AnnounceAsync(string topic, CancellationToken cancellationToken)
        {
            owner.Record("announce:" + topic);
            return inner.AnnounceAsync(topic, cancellationToken);
        }

        public Task UnannounceAsync(string topic, CancellationToken cancellationToken)
        {
            owner.Record("unannounce:" + topic);
            return inner.UnannounceAsync(topic, cancellationToken);
        }

        public Task<IReadOnlyList<DiscoveredPeer>> LookupAsync(string topic, CancellationToken cancellationToken) => inner.LookupAsync(topic, cancellationToken);

        public Task WaitUntilJoinedAsync(CancellationToken cancellationToken) => inner.WaitUntilJoinedAsync(cancellationToken);
    }
}
