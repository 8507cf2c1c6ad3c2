using Microsoft.Extensions.AI;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Client;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace P2PInference.Tests.Unit.Client;

/// <summary>The SDK as Microsoft.Extensions.AI's IChatClient, alone and inside that library's own middleware.</summary>
[TestFixture]
public sealed class ChatClientTests
{
    [Test]
    public void Options_MapOntoTheRequest_AndRolesOntoTheChat()
    {
        var request = P2PInferenceChatClient.ToRequest(
            [new AiChatMessage(ChatRole.System, "Be brief."), new AiChatMessage(ChatRole.User, "hi"), new AiChatMessage(ChatRole.Assistant, "hello")],
            new ChatOptions { ModelId = "builtin-large", Temperature = 0.25f, TopP = 0.5f, MaxOutputTokens = 9, StopSequences = ["\n"], Seed = 42 },
            defaultModel: "builtin-small");

        Assert.Multiple(() =>
        {
            Assert.That(request.Messages.Select(m => (m.Role, m.Content)), Is.EqualTo(new[] { ("system", "Be brief."), ("user", "hi"), ("assistant", "hello") }));
            Assert.That(request.Model, Is.EqualTo("builtin-large"));
            Assert.That(request.Temperature, Is.EqualTo(0.25));
            Assert.That(request.TopP, Is.EqualTo(0.5));
            Assert.That(request.MaxTokens, Is.EqualTo(9));
            Assert.That(request.Stop, Is.EqualTo(new[] { "\n" }));
            Assert.That(request.Seed, Is.EqualTo(42));
        });
        Assert.That(P2PInferenceChatClient.ToRequest([new AiChatMessage(ChatRole.User, "x")], null, "builtin-small").Model, Is.EqualTo("builtin-small"));
        Assert.That(() => P2PInferenceChatClient.ToRequest([new AiChatMessage(ChatRole.Tool, "x")], null, null), Throws.ArgumentException);
        Assert.That(() => P2PInferenceChatClient.ToRequest([], null, null), Throws.ArgumentException);
    }

    [Test]
    public void GetResponse_ReturnsTheAssistantsText_WithUsageAndFinishReason() => GatewaySimulation.Run(async g =>
    {
        IChatClient chat = g.Client().AsChatClient("builtin-small");

        var response = await chat.GetResponseAsync([new AiChatMessage(ChatRole.System, "x"), new AiChatMessage(ChatRole.User, "hello there")]);

        var sent = (InferRequest)g.Gateway.CallsOf(WorkerMethods.Gateway.Infer).Single().Request;
        Assert.Multiple(() =>
        {
            Assert.That(response.Text, Is.EqualTo("HELLO THERE"));
            Assert.That(response.Messages.Single().Role, Is.EqualTo(ChatRole.Assistant));
            Assert.That(response.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
            Assert.That(response.Usage?.InputTokenCount, Is.EqualTo(2));
            Assert.That(response.Usage?.OutputTokenCount, Is.EqualTo(1));
            Assert.That(response.Usage?.TotalTokenCount, Is.EqualTo(3));
            Assert.That(response.ModelId, Is.EqualTo("builtin-small"));
            Assert.That(sent.Messages, Has.Count.EqualTo(2), "the chat went as messages");
            Assert.That(g.Gateway.CallsOf(WorkerMethods.Gateway.Infer).Single().Authorization, Is.EqualTo("ApiKey " + FakeGateway.ApiKey));
        });
    });

    [Test]
    public void GetStreamingResponse_YieldsUpdatesAsTheyArrive_AndUsageOnTheLast() => GatewaySimulation.Run(async g =>
    {
        IChatClient chat = g.Client().AsChatClient("builtin-small");

        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in chat.GetStreamingResponseAsync([new AiChatMessage(ChatRole.User, "one two three")])) updates.Add(update);
        var combined = updates.ToChatResponse();

        Assert.Multiple(() =>
        {
            Assert.That(updates, Has.Count.EqualTo(3));
            Assert.That(combined.Text, Is.EqualTo("one two three"));
            Assert.That(combined.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
            Assert.That(combined.Usage?.OutputTokenCount, Is.EqualTo(3));
            Assert.That(updates.Take(2).Select(u => u.FinishReason), Is.All.Null);
        });
    });

    [Test]
    public void Cancellation_BeforeTheAnswer_EndsTheCallWithOperationCanceled() => GatewaySimulation.Run(async g =>
    {
        var release = new TaskCompletionSource<InferResponse>();
        g.Gateway.Node.Respond<InferRequest, InferResponse>(WorkerMethods.Gateway.Infer, InferRequest.Parser, async (_, context) =>
            await release.Task.WaitAsync(context.CancellationToken));
        IChatClient chat = g.Client().AsChatClient("builtin-small");
        using var cancel = new CancellationTokenSource();

        var call = chat.GetResponseAsync([new AiChatMessage(ChatRole.User, "hi")], cancellationToken: cancel.Token);
        await g.Sim.Clock.RunUntilIdleAsync();
        cancel.Cancel();

        await Assert.ThatAsync(() => call, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(call.IsCanceled || call.IsFaulted, Is.True);
    });

    [Test]
    public void ErrorsOfTheNetwork_PassThroughTheChatClient_AsRpcExceptions() => GatewaySimulation.Run(async g =>
    {
        IChatClient chat = g.Client(new ClientOptions()).AsChatClient("builtin-small");

        await Assert.ThatAsync(() => chat.GetResponseAsync([new AiChatMessage(ChatRole.User, "hi")]),
            Throws.TypeOf<RpcException>().With.Property(nameof(RpcException.Code)).EqualTo(RpcStatusCode.Unauthenticated));
    });

    [Test]
    public void CachingMiddleware_AnswersARepeatedChatFromTheCache_WithoutASecondNetworkCall() => GatewaySimulation.Run(async g =>
    {
        var cache = new MemoryDistributedCache(Options.Create(new MemoryDistributedCacheOptions()));
        using var chat = g.Client().AsChatClient("builtin-small").AsBuilder()
            .UseDistributedCache(cache)
            .Build();
        var options = new ChatOptions { Temperature = 0, Seed = 1 };

        var first = await chat.GetResponseAsync([new AiChatMessage(ChatRole.User, "same question")], options);
        var second = await chat.GetResponseAsync([new AiChatMessage(ChatRole.User, "same question")], options);

        Assert.Multiple(() =>
        {
            Assert.That(second.Text, Is.EqualTo(first.Text));
            Assert.That(g.Gateway.CallsOf(WorkerMethods.Gateway.Infer), Has.Length.EqualTo(1), "the second answer came from the cache");
        });
    });

    [Test]
    public void LoggingMiddleware_SeesTheCallAndTheMetadataNamesTheProvider() => GatewaySimulation.Run(async g =>
    {
        var logs = new ListLogger();
        using var factory = LoggerFactory.Create(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Trace));
        using var chat = g.Client().AsChatClient("builtin-small").AsBuilder()
            .UseLogging(factory)
            .Build();

        var response = await chat.GetResponseAsync("hello world");

        Assert.Multiple(() =>
        {
            Assert.That(response.Text, Is.EqualTo("HELLO WORLD"));
            Assert.That(logs.Lines, Has.Some.Contains(nameof(IChatClient.GetResponseAsync)));
            Assert.That(chat.GetService<ChatClientMetadata>()?.ProviderName, Is.EqualTo(P2PInferenceChatClient.ProviderName));
            Assert.That(chat.GetService<P2PInferenceClient>(), Is.Not.Null);
        });
    });

    /// <summary>Collects log lines in memory.</summary>
    private sealed class ListLogger : ILoggerProvider, ILogger
    {
        public List<string> Lines { get; } = [];

        public ILogger CreateLogger(string categoryName) => this;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Lines) Lines.Add(formatter(state, exception));
        }

        public void Dispose()
        {
        }
    }
}
