using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Identity;

namespace P2PInference.Workers.Gateway;

/// <summary>
/// The log lines every inference request writes, generated so that a disabled level costs a check
/// and nothing else: no argument array, no boxing, no message template lookup per request.
/// </summary>
internal static partial class GatewayLog
{
    [LoggerMessage(Level = LogLevel.Information, Message = "request {RequestId}: {Method} from {Peer} (rpc id {RpcRequestId}, trace {TraceId}), model {Model}")]
    public static partial void InferenceArrived(ILogger logger, string requestId, string method, PeerId peer, string rpcRequestId, string traceId, string model);

    [LoggerMessage(Level = LogLevel.Debug, Message = "request {RequestId}: user {UserId} may run model {Model}, up to {MaxTokens} tokens")]
    public static partial void InferenceAllowed(ILogger logger, string requestId, string userId, string model, int maxTokens);

    [LoggerMessage(Level = LogLevel.Information, Message = "request {RequestId}: served by {Peer}: {Tokens} tokens, finish {FinishReason}")]
    public static partial void Served(ILogger logger, string requestId, PeerId peer, int tokens, string finishReason);

    [LoggerMessage(Level = LogLevel.Information, Message = "request {RequestId}: stream served by {Peer}: {Chunks} chunks")]
    public static partial void StreamServed(ILogger logger, string requestId, PeerId peer, int chunks);

    [LoggerMessage(Level = LogLevel.Debug, Message = "request {RequestId}: first chunk from {Peer}")]
    public static partial void FirstChunk(ILogger logger, string requestId, PeerId peer);

    [LoggerMessage(Level = LogLevel.Debug, Message = "request {RequestId}: credential {Credential} of user {UserId} accepted from cache")]
    public static partial void CredentialFromCache(ILogger logger, string requestId, GatewayCredential credential, string userId);

    [LoggerMessage(Level = LogLevel.Debug, Message = "request {RequestId}: processor {Peer} chosen for model {Model} among {Count}")]
    public static partial void ProcessorChosen(ILogger logger, string requestId, PeerId peer, string model, int count);
}
