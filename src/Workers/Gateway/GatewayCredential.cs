using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Contracts;

namespace P2PInference.Workers.Gateway;

/// <summary>A caller's credential as read from the <c>authorization</c> metadata: <c>ApiKey &lt;key&gt;</c> or <c>Bearer &lt;token&gt;</c>.</summary>
public readonly record struct GatewayCredential(CredentialKind Kind, string Value)
{
    private const string ApiKeyScheme = "ApiKey";
    private const string BearerScheme = "Bearer";

    /// <summary>Reads the credential of a call.</summary>
    /// <exception cref="RpcException"><see cref="RpcStatusCode.Unauthenticated"/>: missing or malformed.</exception>
    public static GatewayCredential FromMetadata(IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        if (!metadata.TryGetValue(WorkerMethods.AuthorizationMetadata, out var header) || string.IsNullOrWhiteSpace(header))
            throw new RpcException(RpcStatusCode.Unauthenticated,
                $"missing credential: set the '{WorkerMethods.AuthorizationMetadata}' metadata to 'ApiKey <key>' or 'Bearer <token>'");
        return Parse(header);
    }

    /// <exception cref="RpcException"><see cref="RpcStatusCode.Unauthenticated"/>: not of the form <c>ApiKey &lt;key&gt;</c> or <c>Bearer &lt;token&gt;</c>.</exception>
    public static GatewayCredential Parse(string header)
    {
        ArgumentNullException.ThrowIfNull(header);
        if (header.Length > GatewayOptions.MaxCredentialLength + BearerScheme.Length + 1)
            throw Malformed($"the credential is longer than {GatewayOptions.MaxCredentialLength} characters");
        var space = header.IndexOf(' ', StringComparison.Ordinal);
        if (space <= 0) throw Malformed("expected 'ApiKey <key>' or 'Bearer <token>'");
        var scheme = header[..space];
        var value = header[(space + 1)..];
        CredentialKind kind;
        if (scheme.Equals(ApiKeyScheme, StringComparison.OrdinalIgnoreCase)) kind = CredentialKind.ApiKey;
        else if (scheme.Equals(BearerScheme, StringComparison.OrdinalIgnoreCase)) kind = CredentialKind.Bearer;
        else throw Malformed("unknown scheme; expected 'ApiKey <key>' or 'Bearer <token>'");
        if (value.Length == 0) throw Malformed($"the {scheme} credential is empty");
        foreach (var c in value)
            if (c is <= ' ' or > '~') throw Malformed($"the {scheme} credential has characters no key or token has");
        return new GatewayCredential(kind, value);
    }

    private static RpcException Malformed(string why) => new(RpcStatusCode.Unauthenticated, $"malformed credential: {why}");

    /// <summary>Never the secret itself: credentials end up in logs by accident otherwise.</summary>
    public override string ToString() => $"{Kind} …{(Value.Length >= 4 ? Value[^4..] : "")}";
}
