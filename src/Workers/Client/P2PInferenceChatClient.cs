using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Contracts.Inference;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace P2PInference.Workers.Client;

/// <summary>
/// <see cref="IChatClient"/> over a <see cref="P2PInferenceClient"/>: a .NET application uses the
/// network through Microsoft.Extensions.AI and its middleware. Messages become the request's chat;
/// <see cref="ChatOptions"/> map to model, temperature, top-p, max tokens, stop sequences and seed.
/// Cancelling the token (or stopping a streaming enumeration) cancels the request at the gateway
/// and the processor. Failures are <see cref="RpcException"/>s, as from the client itself.
/// </summary>
public sealed class P2PInferenceChatClient : IChatClient
{
    /// <summary>The provider name in <see cref="ChatClientMetadata"/>.</summary>
    public const string ProviderName = "p2pinference";

    private readonly P2PInferenceClient _client;
    private readonly string? _defaultModel;
    private readonly ChatClientMetadata _metadata;

    /// <param name="client">The client to call through; not disposed with this one.</param>
    /// <param name="defaultModel">The model when <see cref="ChatOptions.ModelId"/> is unset; null: the gateway's default.</param>
    public P2PInferenceChatClient(P2PInferenceClient client, string? defaultModel = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        _client = client;
        _defaultModel = defaultModel;
        _metadata = new ChatClientMetadata(ProviderName, providerUri: null, defaultModelId: defaultModel);
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AiChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var request = ToRequest(messages, options, _defaultModel);
        var response = await _client.InferAsync(request, cancellationToken);
        var message = new AiChatMessage(ChatRole.Assistant, response.Text) { MessageId = response.RequestId };
        return new ChatResponse(message)
        {
            ResponseId = response.RequestId,
            ModelId = response.Model,
            CreatedAt = _client.Options.TimeProvider.GetUtcNow(),
            FinishReason = ToFinishReason(response.FinishReason),
            Usage = ToUsage(response.PromptTokens, response.CompletionTokens != 0 ? response.CompletionTokens : response.Tokens),
            AdditionalProperties = new AdditionalPropertiesDictionary { ["processor"] = response.Processor },
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AiChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var request = ToRequest(messages, options, _defaultModel);
        var created = _client.Options.TimeProvider.GetUtcNow();
        await foreach (var chunk in _client.InferStreamAsync(request, cancellationToken))
        {
            var update = new ChatResponseUpdate(ChatRole.Assistant, chunk.Text)
            {
                ResponseId = chunk.RequestId,
                MessageId = chunk.RequestId,
                ModelId = request.Model,
                CreatedAt = created,
            };
            if (chunk.FinishReason.Length > 0)
            {
                update.FinishReason = ToFinishReason(chunk.FinishReason);
                update.Contents.Add(new UsageContent(ToUsage(chunk.PromptTokens, chunk.CompletionTokens)));
                update.AdditionalProperties = new AdditionalPropertiesDictionary { ["processor"] = chunk.Processor };
            }
            yield return update;
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(P2PInferenceClient)) return _client;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Nothing to release: the <see cref="P2PInferenceClient"/> belongs to the caller.</summary>
    public void Dispose()
    {
    }

    /// <summary>The request a chat and its options become.</summary>
    /// <exception cref="ArgumentException">A message has a role the network does not know (tools), or there is no text.</exception>
    internal static InferRequest ToRequest(IEnumerable<AiChatMessage> messages, ChatOptions? options, string? defaultModel)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var request = new InferRequest
        {
            Model = options?.ModelId ?? defaultModel ?? string.Empty,
            MaxTokens = options?.MaxOutputTokens ?? 0,
            Temperature = options?.Temperature ?? DefaultTemperature,
            TopP = options?.TopP,
            Seed = options?.Seed,
        };
        if (options?.StopSequences is { } stops) request.Stop.AddRange(stops);
        foreach (var message in messages)
        {
            var role = message.Role == ChatRole.System ? InferMessageRoles.System
                : message.Role == ChatRole.User ? InferMessageRoles.User
                : message.Role == ChatRole.Assistant ? InferMessageRoles.Assistant
                : throw new ArgumentException($"the network takes system, user and assistant messages; not '{message.Role}'", nameof(messages));
            request.Messages.Add(new InferMessage { Role = role, Content = message.Text });
        }
        if (request.Messages.Count == 0) throw new ArgumentException("no messages to answer", nameof(messages));
        if (options?.MaxOutputTokens is < 0) throw new ArgumentException("MaxOutputTokens must not be negative", nameof(options));
        return request;
    }

    /// <summary>The temperature when the options give none: OpenAI's default.</summary>
    internal const double DefaultTemperature = 1.0;

    internal static ChatFinishReason? ToFinishReason(string reason) => reason switch
    {
        "" => null,
        FinishReasons.Stop => ChatFinishReason.Stop,
        FinishReasons.Length => ChatFinishReason.Length,
        _ => new ChatFinishReason(reason),
    };

    private static UsageDetails ToUsage(int promptTokens, int completionTokens) => new()
    {
        InputTokenCount = promptTokens,
        OutputTokenCount = completionTokens,
        TotalTokenCount = (long)promptTokens + completionTokens,
    };
}
