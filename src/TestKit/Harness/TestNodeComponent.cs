namespace P2PInference.TestKit.Harness;

/// <summary>
/// Something a <see cref="TestCluster"/> runs on each node (or on the nodes with one of
/// <see cref="Roles"/>): an RPC server, a worker, a custom protocol handler. <see cref="Start"/> runs
/// after the node's host, store and discovery are up, in the order the components are listed, and again
/// on every restart; what it returns is disposed when the node stops or is killed (in reverse order),
/// and is reachable as <see cref="TestNode.Get{T}"/> and, for later components, <see cref="TestNodeContext.Get{T}"/>.
/// </summary>
/// <param name="Name">Names the component in errors.</param>
/// <param name="Start">Starts the component on one node.</param>
public sealed record TestNodeComponent(string Name, Func<TestNodeContext, CancellationToken, Task<IAsyncDisposable>> Start)
{
    /// <summary>The roles whose nodes run this component; empty (the default) means every node.</summary>
    public IReadOnlySet<string> Roles { get; init; } = new HashSet<string>();

    /// <summary>A component run only on nodes with one of <paramref name="roles"/>.</summary>
    public static TestNodeComponent ForRoles(string name, Func<TestNodeContext, CancellationToken, Task<IAsyncDisposable>> start, params IEnumerable<string> roles) =>
        new(name, start) { Roles = new HashSet<string>(roles, StringComparer.Ordinal) };

    /// <summary>Registers a protocol handler on each node's host (the host goes away with the node, so nothing to dispose).</summary>
    public static TestNodeComponent Handler(string protocolId, Facilities.Net.Host.StreamHandler handler) =>
        new($"handler {protocolId}", (context, _) =>
        {
            context.Host.Handle(protocolId, handler);
            return Task.FromResult<IAsyncDisposable>(NoOpDisposable.Instance);
        });

    internal bool RunsOn(TestNodeSpec spec) => Roles.Count == 0 || Roles.Any(spec.HasRole);
}
