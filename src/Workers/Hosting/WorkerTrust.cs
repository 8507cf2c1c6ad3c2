using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
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

    /// <summary>
    /// What a worker of <paramref name="role"/> holding <paramref name="grant"/> runs on: the grant and the newest
    /// signed revocation list served to whoever asks (<see cref="GrantExchange"/>, <see cref="RevocationExchange"/>), calls only to callees that prove their role
    /// (<see cref="TrustedRpcClient"/>, which also presents the grant), and — for Auth and processors —
    /// a server that answers only gateways (<see cref="TrustedRpcServer"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">The grant does not let this node act as <paramref name="role"/> now.</exception>
    public static (IRpcServer Server, TrustedRpcClient Client) Secure(WorkerRole role, PeerId self, HeldGrant grant, GrantVerifier verifier,
        IRpcServer server, IRpcClient client, TimeSpan cachePeriod, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(grant);
        ArgumentNullException.ThrowIfNull(verifier);
        if (Unusable(role, self, grant.Current, verifier) is { } unusable)
            throw new InvalidOperationException(
                $"this node ({self}, {WorkerRoles.NameOf(role)}) cannot use the grant: {unusable}");
        GrantExchange.Serve(server, grant);
        RevocationExchange.Serve(server, verifier);
        var trustedClient = new TrustedRpcClient(client, verifier, RoleOfMethod, grant, cachePeriod, loggerFactory);
        IRpcServer trustedServer = CallerRoleOf(role) is { } callers ? new TrustedRpcServer(server, verifier, callers, trustedClient) : server;
        return (trustedServer, trustedClient);
    }

    /// <summary>Why <paramref name="grant"/> cannot let this node act as <paramref name="role"/> now; null when it can.</summary>
    public static string? Unusable(WorkerRole role, PeerId self, RoleGrant grant, GrantVerifier verifier)
    {
        ArgumentNullException.ThrowIfNull(grant);
        ArgumentNullException.ThrowIfNull(verifier);
        var grantRole = GrantRoleOf(role) ?? throw new ArgumentException($"{WorkerRoles.NameOf(role)} holds no grant", nameof(role));
        return verifier.Check(grant, self, grantRole)?.Replace("its grant", "the grant", StringComparison.Ordinal);
    }
}
