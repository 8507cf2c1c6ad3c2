using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Store;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// The facilities a <see cref="WorkerRuntime"/> starts, as one seam: the real libp2p ones
/// (<see cref="Libp2pWorkerFacilities"/>) or the TestKit twins (an in-memory RPC node, a mock DHT, a
/// RAM store). The runtime calls the start methods in declaration order — store, network,
/// discovery, RPC — and, on stop or a failed start, the stop methods of those started in reverse.
/// </summary>
public interface IWorkerFacilities
{
    Task<IKeyValueStore> OpenStoreAsync(string directory, CancellationToken cancellationToken);

    /// <summary>Starts listening as <paramref name="identity"/>; returns the addresses others can dial (ending in /p2p/&lt;PeerId&gt;).</summary>
    Task<IReadOnlyList<Multiaddress>> StartNetworkAsync(KeyPair identity, CancellationToken cancellationToken);

    /// <summary>Keeps the host's inbound slots reserved for trusted peers for those <paramref name="isTrusted"/> accepts (a worker holding a grant calls it once its trust is set up).</summary>
    void KeepInboundCapacityFor(Func<PeerId, CancellationToken, ValueTask<bool>> isTrusted);

    Task<IDiscovery> StartDiscoveryAsync(CancellationToken cancellationToken);

    Task<(IRpcServer Server, IRpcClient Client)> StartRpcAsync(IDiscovery discovery, CancellationToken cancellationToken);

    /// <summary>Stops serving and cancels running handlers (their callers get Unavailable).</summary>
    Task StopRpcAsync(CancellationToken cancellationToken);

    Task StopDiscoveryAsync(CancellationToken cancellationToken);

    Task StopNetworkAsync(CancellationToken cancellationToken);

    Task CloseStoreAsync(CancellationToken cancellationToken);
}
