namespace P2PInference.Workers.Gateway;

/// <summary>The two schemes of the <c>authorization</c> metadata.</summary>
public enum CredentialKind
{
    /// <summary><c>ApiKey &lt;key&gt;</c>: a key made by createApiKey.</summary>
    ApiKey,

    /// <summary><c>Bearer &lt;token&gt;</c>: a token from login.</summary>
    Bearer,
}
