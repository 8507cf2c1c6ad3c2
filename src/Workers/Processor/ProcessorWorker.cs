using System.Text;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Hosting;
using P2PInference.Workers.Processor.Engines;
using ContractModelInfo = P2PInference.Workers.Contracts.Inference.ModelInfo;
using EngineModelInfo = P2PInference.Workers.Processor.Engines.ModelInfo;

namespace P2PInference.Workers.Processor;

/// <summary>
/// Serves inference: <see cref="WorkerMethods.Processor.Infer"/>, <see cref="WorkerMethods.Processor.InferStream"/>
/// and <see cref="WorkerMethods.Processor.Status"/>. Announces <see cref="WorkerTopics.Processor"/> and
/// <see cref="WorkerTopics.Model"/> of every model the engine serves. At most
/// <see cref="ProcessorOptions.MaxConcurrency"/> generations run; <see cref="ProcessorOptions.MaxQueue"/>
/// more wait in line; past that callers get ResourceExhausted with a retry-after. A caller's
/// cancellation (or deadline) reaches the engine. Bad input is an InvalidArgument for that caller only.
/// </summary>
public sealed class ProcessorWorker : IWorker
{
    public const string WorkerRole = "processor";


    private static readonly MessagePackRpcCodec<InferRequest> InferCodec = InferRequest.Parser;
    private static readonly MessagePackRpcCodec<StatusRequest> StatusCodec = StatusRequest.Parser;

    private readonly ProcessorOptions _options;
    private readonly IInferenceEngine? _givenEngine;
    private readonly InferenceScheduler _scheduler;
    private IInferenceEngine? _engine;
    private Dictionary<string, EngineModelInfo> _models = new(StringComparer.Ordinal);
    private IRpcServer? _server;
    private ILogger _logger = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
    private string _self = string.Empty;
    private TimeProvider _time = TimeProvider.System;

    /// <param name="options">Validated here: throws <see cref="ProcessorConfigurationException"/>.</param>
    /// <param name="engine">The engine to serve with (not disposed by the worker); null builds one from <see cref="ProcessorOptions.Engine"/> on start.</param>
    public ProcessorWorker(ProcessorOptions options, IInferenceEngine? engine = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.ThrowIfInvalid();
        if (engine is null)
        {
            var engineErrors = InferenceEngineFactory.Validate(options.Engine);
            if (engineErrors.Count > 0) throw new EngineConfigurationException(engineErrors);
        }
        _options = options;
        _givenEngine = engine;
        _scheduler = new InferenceScheduler(options.MaxConcurrency, options.MaxQueue);
    }

    public string Role => WorkerRole;

    /// <summary>Generations running now.</summary>
    public int Active => _scheduler.Active;

    /// <summary>Requests waiting for a slot now.</summary>
    public int Queued => _scheduler.Queued;

    /// <summary>The names of the models served (known once started).</summary>
    public IReadOnlyCollection<string> Models => _models.Keys;

    internal InferenceScheduler Scheduler => _scheduler;

    public async Task<IReadOnlyList<string>> StartAsync(WorkerContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (_server is not null) throw new InvalidOperationException("the processor is started already");
        _logger = context.LoggerFactory.CreateLogger<ProcessorWorker>();
        _self = context.Identity.PeerId.ToString();
        _time = context.Time;
        var engine = _givenEngine ?? InferenceEngineFactory.Create(_options.Engine, context.Time, seedSource: new Random(context.Random.Next()));
        try
        {
            await engine.InitializeAsync(cancellationToken);
        }
        catch
        {
            if (_givenEngine is null) engine.Dispose();
            throw;
        }
        _engine = engine;
        _models = engine.Models.ToDictionary(m => m.Name, StringComparer.Ordinal);

        var inference = new RpcMethodOptions { AllowedPeers = _options.ParseAllowedPeers() };
        _server = context.Server;
        _server.Respond(WorkerMethods.Processor.Infer, InferAsync, inference);
        _server.RespondStreaming(WorkerMethods.Processor.InferStream, InferStreamAsync, inference);
        _server.Respond(WorkerMethods.Processor.Status, StatusAsync);

        var topics = new List<string> { WorkerTopics.Processor };
        topics.AddRange(_models.Keys.Order(StringComparer.Ordinal).Select(WorkerTopics.Model));
        _logger.LogInformation("processor {PeerId} serving {Models} with {MaxConcurrency} slots and a queue of {MaxQueue}{AllowList}",
            _self, string.Join(", ", _models.Keys), _options.MaxConcurrency, _options.MaxQueue,
            inference.AllowedPeers is { } allowed ? $", {allowed.Count} allowed peers" : string.Empty);
        return topics;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is { } server)
        {
            server.Unrespond(WorkerMethods.Processor.Infer);
            server.Unrespond(WorkerMethods.Processor.InferStream);
            server.Unrespond(WorkerMethods.Processor.Status);
            _server = null;
        }
        if (_givenEngine is null) _engine?.Dispose();
        _engine = null;
        return Task.CompletedTask;
    }

    private async ValueTask<ReadOnlyMemory<byte>> InferAsync(ReadOnlyMemory<byte> payload, RpcCallContext context)
    {
        var request = Decode(payload, context);
        var requestId = RequestIdOf(request, context);
        using var scope = BeginScope(requestId, context);
        var (engineRequest, engine) = Prepare(request, requestId, context);
        var queued = _time.GetTimestamp();
        using var lease = await AdmitAsync(requestId, context);
        var started = _time.GetTimestamp();
        _logger.LogInformation("request {RequestId} from {Peer}: generating with {Model}, up to {MaxTokens} tokens",
            requestId, context.RemotePeer, engineRequest.Model, engineRequest.MaxTokens);

        var text = new StringBuilder();
        var tokens = 0;
        FinishReason? finish = null;
        TokenUsage? usage = null;
        try
        {
            await foreach (var token in engine.GenerateAsync(engineRequest, context.CancellationToken))
            {
                if (token.Text.Length > 0)
                {
                    text.Append(token.Text);
                    tokens++;
                }
                finish = token.FinishReason ?? finish;
                usage = token.Usage ?? usage;
            }
        }
        catch (Exception e) when (Failure(e, requestId, text, context) is { } rpc)
        {
            throw rpc;
        }
        _logger.LogInformation("request {RequestId} done: {Tokens} tokens, finish {FinishReason}", requestId, tokens, finish);
        return new InferResponse
        {
            RequestId = requestId,
            Model = engineRequest.Model,
            Text = text.ToString(),
            Tokens = usage?.CompletionTokens ?? tokens,
            FinishReason = FinishText(finish),
            Processor = _self,
            PromptTokens = usage?.PromptTokens ?? 0,
            CompletionTokens = usage?.CompletionTokens ?? tokens,
            QueueMs = Milliseconds(queued, started),
            GenerationMs = Milliseconds(started, _time.GetTimestamp()),
        }.ToByteArray();
    }

    private async IAsyncEnumerable<ReadOnlyMemory<byte>> InferStreamAsync(ReadOnlyMemory<byte> payload, RpcCallContext context)
    {
        // Everything happens inside the enumeration, so bad input fails the stream with its code
        // like any later failure.
        var request = Decode(payload, context);
        var requestId = RequestIdOf(request, context);
        var (engineRequest, engine) = Prepare(request, requestId, context);
        var queued = _time.GetTimestamp();
        using var lease = await AdmitAsync(requestId, context);
        var started = _time.GetTimestamp();
        _logger.LogInformation("request {RequestId} from {Peer}: streaming with {Model}, up to {MaxTokens} tokens",
            requestId, context.RemotePeer, engineRequest.Model, engineRequest.MaxTokens);

        var text = new StringBuilder();
        var index = 0;
        var produced = 0;
        var sentFinish = false;
        await using var tokens = engine.GenerateAsync(engineRequest, context.CancellationToken).GetAsyncEnumerator(context.CancellationToken);
        while (true)
        {
            GeneratedToken token;
            try
            {
                if (!await tokens.MoveNextAsync()) break;
                token = tokens.Current;
            }
            catch (Exception e) when (Failure(e, requestId, text, context) is { } rpc)
            {
                throw rpc;
            }
            if (token.Text.Length == 0 && token.FinishReason is null) continue;
            text.Append(token.Text);
            if (token.Text.Length > 0) produced++;
            var chunk = new InferChunk
            {
                RequestId = requestId,
                Text = token.Text,
                Index = index++,
                FinishReason = FinishText(token.FinishReason),
                Processor = _self,
            };
            if (token.FinishReason is not null)
            {
                sentFinish = true;
                Account(chunk, token.Usage, produced, queued, started);
            }
            yield return chunk.ToByteArray();
        }
        if (!sentFinish)
        {
            // The engine contract ends every normal stream with a finish reason; say so even if one did not.
            var last = new InferChunk { RequestId = requestId, Index = index, FinishReason = FinishText(FinishReason.Stop), Processor = _self };
            Account(last, null, produced, queued, started);
            yield return last.ToByteArray();
        }
        _logger.LogInformation("request {RequestId} streamed: {Chunks} chunks", requestId, index);
    }

    /// <summary>Fills the last chunk's usage (the engine's count, else the pieces streamed) and timing.</summary>
    private void Account(InferChunk chunk, TokenUsage? usage, int produced, long queued, long started)
    {
        chunk.PromptTokens = usage?.PromptTokens ?? 0;
        chunk.CompletionTokens = usage?.CompletionTokens ?? produced;
        chunk.QueueMs = Milliseconds(queued, started);
        chunk.GenerationMs = Milliseconds(started, _time.GetTimestamp());
    }

    private long Milliseconds(long from, long to) => (long)_time.GetElapsedTime(from, to).TotalMilliseconds;

    private ValueTask<ReadOnlyMemory<byte>> StatusAsync(ReadOnlyMemory<byte> payload, RpcCallContext context)
    {
        try
        {
            StatusCodec.Decode(payload);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw InferenceErrors.Invalid("malformed status request");
        }
        var response = new StatusResponse
        {
            Active = _scheduler.Active,
            Queued = _scheduler.Queued,
            MaxConcurrency = _scheduler.MaxConcurrency,
            MaxQueue = _scheduler.MaxQueue,
        };
        response.Models.AddRange(_models.Values.OrderBy(m => m.Name, StringComparer.Ordinal).Select(ToContract));
        return ValueTask.FromResult<ReadOnlyMemory<byte>>(response.ToByteArray());
    }

    internal static ContractModelInfo ToContract(EngineModelInfo model) => new()
    {
        Name = model.Name,
        Description = model.Description,
        MaxTokens = model.MaxOutputTokens,
    };

    private InferRequest Decode(ReadOnlyMemory<byte> payload, RpcCallContext context)
    {
        try
        {
            return InferCodec.Decode(payload);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _logger.LogWarning("request {RequestId} from {Peer}: malformed {Method} payload ({Bytes} bytes): {Error}",
                context.RequestId, context.RemotePeer, context.Method, payload.Length, e.Message);
            throw InferenceErrors.Invalid("malformed inference request");
        }
    }

    /// <summary>The caller's id when it gave a sane one (it ties the hops' logs together), else the RPC call's.</summary>
    private static string RequestIdOf(InferRequest request, RpcCallContext context)
    {
        if (request.RequestId.Length > ProcessorOptions.MaxRequestIdLength)
            throw InferenceErrors.Invalid($"request_id is {request.RequestId.Length} characters; the limit is {ProcessorOptions.MaxRequestIdLength}");
        if (request.RequestId.Any(char.IsControl))
            throw InferenceErrors.Invalid("request_id contains control characters");
        return string.IsNullOrWhiteSpace(request.RequestId) ? context.RequestId : request.RequestId;
    }

    private IDisposable? BeginScope(string requestId, RpcCallContext context) =>
        _logger.BeginScope(new Dictionary<string, object>
        {
            ["RequestId"] = requestId,
            ["TraceId"] = context.TraceId,
            ["Peer"] = context.RemotePeer.ToString(),
        });

    /// <summary>All the checks that need no slot, so bad requests never wait in (or fill) the queue.</summary>
    private (InferenceRequest Request, IInferenceEngine Engine) Prepare(InferRequest request, string requestId, RpcCallContext context)
    {
        var engine = _engine ?? throw new RpcException(RpcStatusCode.Unavailable, "the processor is stopping");
        try
        {
            if (string.IsNullOrWhiteSpace(request.Model)) throw InferenceErrors.Invalid("model is required");
            if (!_models.TryGetValue(request.Model, out var model))
                throw new RpcException(RpcStatusCode.NotFound,
                    $"model '{Truncate(request.Model)}' is not served here; models: {string.Join(", ", _models.Keys.Order(StringComparer.Ordinal))}");
            var messages = ChatOf(request);
            if (messages is null && string.IsNullOrWhiteSpace(request.Prompt)) throw InferenceErrors.Invalid("prompt is empty");
            if (request.InputLength > _options.MaxPromptLength)
                throw InferenceErrors.Invalid($"prompt is {request.InputLength} characters; the limit is {_options.MaxPromptLength}");
            if (request.MaxTokens < 0) throw InferenceErrors.Invalid($"max_tokens must not be negative (was {request.MaxTokens})");
            if (request.Seed is < int.MinValue or > int.MaxValue)
                throw InferenceErrors.Invalid($"seed must fit in 32 bits (was {request.Seed})");
            if (request.Stop.Count > InferenceRequest.MaxStopSequences)
                throw InferenceErrors.Invalid($"at most {InferenceRequest.MaxStopSequences} stop sequences are allowed (got {request.Stop.Count})");

            // Unset means the model's own limit (what Status advertises); the processor's cap only lowers it.
            var maxTokens = request.MaxTokens == 0
                ? Math.Min(_options.MaxTokensCap, model.MaxOutputTokens)
                : Math.Min(request.MaxTokens, _options.MaxTokensCap);
            var result = new InferenceRequest
            {
                Model = model.Name,
                Prompt = messages is null ? request.Prompt : null,
                Messages = messages,
                MaxTokens = maxTokens,
                Temperature = request.Temperature,
                TopP = request.TopP,
                Seed = (int?)request.Seed,
                Stop = request.Stop.Count > 0 ? request.Stop.ToArray() : null,
            };
            result.ValidateShape();
            result.ValidateAgainst(model);
            return (result, engine);
        }
        catch (InferenceException e)
        {
            throw Rejected(InferenceErrors.ToRpc(e, null), requestId, context);
        }
        catch (RpcException e)
        {
            throw Rejected(e, requestId, context);
        }
    }

    /// <summary>The request's chat for the engine; null for a single prompt. Roles are checked here, content by the engine.</summary>
    private static IReadOnlyList<ChatMessage>? ChatOf(InferRequest request)
    {
        if (!request.IsChat) return null;
        if (request.Prompt.Length > 0) throw InferenceErrors.Invalid("give either prompt or messages, not both");
        if (request.Messages.Count > ProcessorOptions.MaxMessages)
            throw InferenceErrors.Invalid($"at most {ProcessorOptions.MaxMessages} messages are allowed (got {request.Messages.Count})");
        var messages = new ChatMessage[request.Messages.Count];
        for (var i = 0; i < messages.Length; i++)
        {
            var message = request.Messages[i];
            if (!InferMessageRoles.IsKnown(message.Role))
                throw InferenceErrors.Invalid($"messages[{i}].role must be system, user or assistant (was '{Truncate(message.Role)}')");
            messages[i] = new ChatMessage(message.Role, message.Content);
        }
        return messages;
    }

    private RpcException Rejected(RpcException e, string requestId, RpcCallContext context)
    {
        _logger.LogInformation("request {RequestId} from {Peer} rejected: {Code} {Message}", requestId, context.RemotePeer, e.Code, e.Message);
        return e;
    }

    private async ValueTask<InferenceScheduler.Lease> AdmitAsync(string requestId, RpcCallContext context)
    {
        InferenceScheduler.Lease? lease;
        try
        {
            lease = await _scheduler.TryAcquireAsync(context.CancellationToken);
        }
        catch (OperationCanceledException)
        {
            _logger.LogInformation("request {RequestId} left the queue: the caller cancelled", requestId);
            throw;
        }
        if (lease is null)
        {
            _logger.LogWarning("request {RequestId} from {Peer} turned away: {Active} running and {Queued} queued",
                requestId, context.RemotePeer, _scheduler.Active, _scheduler.Queued);
            throw RpcException.WithRetryAfter(RpcStatusCode.ResourceExhausted,
                $"the processor is busy ({_scheduler.MaxConcurrency} running, {_scheduler.MaxQueue} queued); retry later",
                _options.QueueFullRetryAfter);
        }
        return lease;
    }

    /// <summary>The RPC error for a failed generation, logged; null for the caller's own cancellation, which passes through.</summary>
    private RpcException? Failure(Exception e, string requestId, StringBuilder partial, RpcCallContext context)
    {
        switch (e)
        {
            case OperationCanceledException when context.CancellationToken.IsCancellationRequested:
                _logger.LogInformation("request {RequestId} cancelled by the caller after {Chars} characters", requestId, partial.Length);
                return null;
            case InferenceException inference:
                _logger.LogWarning("request {RequestId} failed in the engine: {Kind} {Message}", requestId, inference.Kind, inference.Message);
                return InferenceErrors.ToRpc(inference, partial.ToString());
            case RpcException:
                return null;
            default:
                _logger.LogError(e, "request {RequestId} failed in the engine", requestId);
                return InferenceErrors.Internal(partial.ToString());
        }
    }

    private static string FinishText(FinishReason? reason) => reason switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        _ => string.Empty,
    };

    private static string Truncate(string text) => text.Length <= 64 ? text : text[..64] + "…";
}
