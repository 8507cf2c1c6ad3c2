using P2PInference.Facilities.Trust;

namespace P2PInference.Workers.Hosting;

/// <summary>Which grant each worker role and each RPC method needs.</summary>
public static class WorkerTrust
{
    /// <summary>The role a callee of <paramref name="method"/> must hold: its worker's, by the method's prefix; null for the grant exchange and other methods.</summary>
    public static GrantRole? RoleOfMethod(string method)
    {
        ArgumentNullException.ThrowIfNull(method);
        if (method.StartsWith("auth.", StringComparison.Ordinal)) return GrantRole.Auth;
        if (method.StartsWith("gateway.", StringComparison.Ordinal)) return GrantRole.Gateway;
        if (method.StartsWith("processor.", StringComparison.Ordinal)) return GrantRole.Processor;
        return null;
    }

    /// <summary>The grant role of a worker role; null for the bootstrap node, which holds none.</summary>
    public static GrantRole? GrantRoleOf(WorkerRole role) => role switch
    {
        WorkerRole.Auth => GrantRole.Auth,
        WorkerRole.Gateway => GrantRole.Gateway,
        WorkerRole.Processor => GrantRole.Processor,
        _ => null,
    };

    /// <summary>The role callers of a worker must hold: Auth and processors serve gateways only; gateways serve anyone (clients hold no grant).</summary>
    public static GrantRole? CallerRoleOf(WorkerRole role) => role is WorkerRole.Auth or WorkerRole.Processor ? GrantRole.Gateway : null;

    /// <summary>The one line a worker without a grant stops with.</summary>
    public static string MissingGrantMessage(WorkerRole role) =>
        $"{WorkerRoles.NameOf(role)} needs a role grant: create a cluster key with `p2pinference cluster init --out cluster.key`, " +
        "then pass --cluster-key cluster.key (or --grant FILE from `p2pinference cluster grant`)";
}
