using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;

namespace P2PInference.TestKit.Rpc;

/// <summary>A node under test in <c>RpcConformanceTests</c>: its identity, both RPC halves, and how others dial it.</summary>
public sealed class RpcConformanceNode(PeerId peerId, IRpcServer server, IRpcClient client, IReadOnlyList<Multiaddress> addresses,
    Func<ValueTask> dispose) : IAsyncDisposable
{
    private int _disposed;

    public PeerId PeerId { get; } = peerId;
    public IRpcServer Server { get; } = server;
    public IRpcClient Client { get; } = client;

    /// <summary>Where discovery says the node is; empty for stacks that need no address (the twin).</summary>
    public IReadOnlyList<Multiaddress> Addresses { get; } = addresses;

    public ValueTask DisposeAsync() => Interlocked.Exchange(ref _disposed, 1) == 0 ? dispose() : ValueTask.CompletedTask;
}
