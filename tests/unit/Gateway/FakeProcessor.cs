using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Rpc;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Tests.Unit.Gateway;

/// <summary>
/// A stand-in Processor worker on the RPC twin: status, unary and streaming inference from a
/// script the test sets (<see cref="Stream"/>), recording what it was sent.
/// </summary>
internal sealed class FakeProcessor
{
    public static readonly string[] DefaultWords = ["Hello", " wide", " world", "!"];

    private int _statusCalls;
    private int _streamCalls;
    private int _inferCalls;
    private int _active;

    public FakeProcessor(InMemoryRpcNode node, params string[] models)
        : this(node, node, models)
    {
    }

    /// <summary>A processor on <paramref name="node"/> whose methods are registered through <paramref name="server"/> (the node, or a wrapper of it).</summary>
    public FakeProcessor(InMemoryRpcNode node, IRpcServer server, params string[] models)
    {
        Node = node;
        Models = models;
        server.Respond<StatusRequest, StatusResponse>(WorkerMethods.Processor.Status, StatusRequest.Parser, async (_, context) =>
        {
            Interlocked.Increment(ref _statusCalls);
            if (StatusDelay > TimeSpan.Zero) await Task.Delay(StatusDelay, node.Options.TimeProvider, context.CancellationToken);
            var status = new StatusResponse { Active = Volatile.Read(ref _active) + ReportedLoad, MaxConcurrency = 4, MaxQueue = 16 };
            status.Models.AddRange(Models.Select(m => new ModelInfo { Name = m, Description = "model " + m, MaxTokens = 256 }));
            return status;
        });
        server.Respond<InferRequest, InferResponse>(WorkerMethods.Processor.Infer, InferRequest.Parser, InferAsync);
        server.RespondStreaming<InferRequest, InferChunk>(WorkerMethods.Processor.InferStream, InferRequest.Parser, StreamAsync);
    }

    public InMemoryRpcNode Node { get; }

    public PeerId PeerId => Node.PeerId;

    public string[] Models { get; }

    public int StreamCalls => Volatile.Read(ref _streamCalls);

    /// <summary>How many times it was asked for its status.</summary>
    public int StatusCalls => Volatile.Read(ref _statusCalls);

    /// <summary>How long it takes to answer a status request, on its node's clock. Default: no time.</summary>
    public TimeSpan StatusDelay { get; set; }

    public int InferCalls => Volatile.Read(ref _inferCalls);

    public ConcurrentQueue<(InferRequest Request, RpcCallContext Context)> Received { get; } = new();

    /// <summary>The streaming behaviour: (request, context, 1-based call number) → chunks. Default: <see cref="DefaultWords"/>.</summary>
    public Func<InferRequest, RpcCallContext, int, IAsyncEnumerable<InferChunk>> Stream { get; set; } = (r, c, _) => Words(r, DefaultWords, c.CancellationToken);

    /// <summary>The unary behaviour: (request, call number) → response or throw. Default: the words joined.</summary>
    public Func<InferRequest, int, InferResponse> Unary { get; set; } = (r, _) =>
        new InferResponse { Text = string.Concat(DefaultWords), Tokens = DefaultWords.Length, FinishReason = "stop" };

    /// <summary>
    /// Awaited by a unary call after it was counted and before it answers (a generation in progress):
    /// (request, context, call number). Default: none.
    /// </summary>
    public Func<InferRequest, RpcCallContext, int, Task>? Generating { get; set; }

    /// <summary>Extra running requests the status reports, so the gateway's choice between processors can be steered.</summary>
    public int ReportedLoad { get; set; }

    /// <summary>Completes when a call's token fired while the script waited on it.</summary>
    public TaskCompletionSource CallCancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when a call reached the script.</summary>
    public TaskCompletionSource CallStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public static async IAsyncEnumerable<InferChunk> Words(InferRequest request, IReadOnlyList<string> words, [EnumeratorCancellation] CancellationToken ct)
    {
        for (var i = 0; i < words.Count; i++)
        {
            await Task.Yield();
            ct.ThrowIfCancellationRequested();
            yield return new InferChunk { RequestId = request.RequestId, Text = words[i], Index = i, FinishReason = i == words.Count - 1 ? "stop" : "" };
        }
    }

    /// <summary>Sends <paramref name="words"/>, then fails with <paramref name="error"/>.</summary>
    public static async IAsyncEnumerable<InferChunk> WordsThenFail(InferRequest request, IReadOnlyList<string> words, RpcException error)
    {
        for (var i = 0; i < words.Count; i++)
        {
            await Task.Yield();
            yield return new InferChunk { RequestId = request.RequestId, Text = words[i], Index = i };
        }
        throw error;
    }

    /// <summary>Sends <paramref name="words"/>, then waits until the call is cancelled.</summary>
    public async IAsyncEnumerable<InferChunk> WordsThenWait(InferRequest request, IReadOnlyList<string> words, [EnumeratorCancellation] CancellationToken ct)
    {
        for (var i = 0; i < words.Count; i++)
            yield return new InferChunk { RequestId = request.RequestId, Text = words[i], Index = i };
        try
        {
            await Task.Delay(Timeout.Infinite, ct);
        }
        finally
        {
            CallCancelled.TrySetResult();
        }
    }

    private async ValueTask<InferResponse> InferAsync(InferRequest request, RpcCallContext context)
    {
        var n = Interlocked.Increment(ref _inferCalls);
        Received.Enqueue((request, context));
        CallStarted.TrySetResult();
        if (Generating is { } generating) await generating(request, context, n);
        var response = Unary(request, n);
        response.RequestId = request.RequestId;
        response.Model = request.Model;
        return response;
    }

    private async IAsyncEnumerable<InferChunk> StreamAsync(InferRequest request, RpcCallContext context)
    {
        var n = Interlocked.Increment(ref _streamCalls);
        Received.Enqueue((request, context));
        Interlocked.Increment(ref _active);
        CallStarted.TrySetResult();
        try
        {
            await foreach (var chunk in Stream(request, context, n).WithCancellation(context.CancellationToken))
                yield return chunk;
        }
        finally
        {
            Interlocked.Decrement(ref _active);
        }
    }
}
