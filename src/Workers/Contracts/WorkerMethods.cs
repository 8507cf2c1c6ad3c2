namespace P2PInference.Workers.Contracts;

/// <summary>The RPC method names of every worker, in one place.</summary>
public static class WorkerMethods
{
    public static class Auth
    {
        public const string Register = "auth.register";
        public const string Login = "auth.login";
        public const string CreateApiKey = "auth.createApiKey";
        public const string ListApiKeys = "auth.listApiKeys";
        public const string RevokeApiKey = "auth.revokeApiKey";
        public const string Logout = "auth.logout";
        public const string RevokeAllTokens = "auth.revokeAllTokens";
        public const string Validate = "auth.validate";
    }

    public static class Gateway
    {
        public const string Register = "gateway.register";
        public const string Login = "gateway.login";
        public const string CreateApiKey = "gateway.createApiKey";
        public const string ListApiKeys = "gateway.listApiKeys";
        public const string RevokeApiKey = "gateway.revokeApiKey";
        public const string Logout = "gateway.logout";
        public const string RevokeAllTokens = "gateway.revokeAllTokens";
        public const string Models = "gateway.models";
        public const string Infer = "gateway.infer";
        public const string InferStream = "gateway.inferStream";
        public const string Cancel = "gateway.cancel";
    }

    public static class Processor
    {
        public const string Infer = "processor.infer";
        public const string InferStream = "processor.inferStream";
        public const string Status = "processor.status";
    }

    /// <summary>
    /// RPC metadata key carrying the caller's credential to a gateway:
    /// <c>ApiKey &lt;key&gt;</c> or <c>Bearer &lt;token&gt;</c>.
    /// </summary>
    public const string AuthorizationMetadata = "authorization";

    /// <summary>RPC error detail carrying the text generated before a stream failed.</summary>
    public const string PartialOutputDetail = "partial_output";
}
