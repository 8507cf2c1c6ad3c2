namespace P2PInference.Workers.Hosting;

/// <summary>The role names users type (<c>run auth</c>), and their parsing.</summary>
public static class WorkerRoles
{
    public static IReadOnlyList<string> Names { get; } = ["bootstrap", "auth", "gateway", "processor"];

    public static string NameOf(WorkerRole role) => role switch
    {
        WorkerRole.Bootstrap => "bootstrap",
        WorkerRole.Auth => "auth",
        WorkerRole.Gateway => "gateway",
        WorkerRole.Processor => "processor",
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, null),
    };

    /// <exception cref="WorkerConfigurationException">The name is not one of <see cref="Names"/>.</exception>
    public static WorkerRole Parse(string? name)
    {
        // Enum.TryParse would also take "0" or "Auth, Gateway"; only the documented names are roles.
        for (var i = 0; i < Names.Count; i++)
        {
            if (string.Equals(Names[i], name?.Trim(), StringComparison.OrdinalIgnoreCase)) return (WorkerRole)i;
        }

        throw new WorkerConfigurationException([$"unknown role '{name}'; expected one of {string.Join(", ", Names)}"]);
    }
}
