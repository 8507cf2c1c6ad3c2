namespace P2PInference.TestKit.Harness;

/// <summary>One node of a <see cref="TestCluster"/>: its name (also its in-memory address) and roles.</summary>
/// <remarks>
/// Roles are free-form labels ("auth", "gateway", "processor"…) that components use to decide what to
/// run on a node (<see cref="TestNodeComponent.Roles"/>) and tests use to find nodes
/// (<see cref="TestCluster.WithRole"/>).
/// </remarks>
public sealed record TestNodeSpec
{
    public TestNodeSpec(string name, params IEnumerable<string> roles)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('/')) throw new ArgumentException($"node name '{name}' must not contain '/'", nameof(name));
        Name = name;
        Roles = new HashSet<string>(roles, StringComparer.Ordinal);
    }

    public string Name { get; }

    public IReadOnlySet<string> Roles { get; }

    /// <summary>Whether the node has a <see cref="Store.SimulatedStore"/>; <see cref="TestClusterOptions.Storage"/> when null.</summary>
    public bool? Storage { get; init; }

    public bool HasRole(string role) => Roles.Contains(role);

    public override string ToString() => Roles.Count == 0 ? Name : $"{Name} [{string.Join(", ", Roles.Order(StringComparer.Ordinal))}]";
}
