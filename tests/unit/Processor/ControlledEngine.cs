using System.Runtime.CompilerServices;
using System.Threading.Channels;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.Unit.Processor;

/// <summary>
/// An engine the test drives by hand: every generation waits for the test to emit tokens, finish
/// or fail it, and records when its cancellation token fires. No sleeps, no clocks.
/// </summary>
internal sealed class ControlledEngine(params string[] models) : IInferenceEngine
{
    private readonly Channel<Generation> _started = Channel.CreateUnbounded<Generation>();
    private int _startedCount;

    public string Kind => "controlled";

    public IReadOnlyList<ModelInfo> Models { get; } =
        (models.Length == 0 ? ["m1"] : models).Select(m => new ModelInfo(m, "test model " + m, 1000, 100)).ToArray();

    public int StartedCount => Volatile.Read(ref _startedCount);

    public Task InitializeAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>The next generation the processor started, in start order.</summary>
    public async Task<Generation> NextStartedAsync(CancellationToken cancellationToken = default) =>
        await _started.Reader.ReadAsync(cancellationToken);

    public bool TryGetStarted(out Generation? generation) => _started.Reader.TryRead(out generation);

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(InferenceRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var generation = new Generation(request, cancellationToken);
        Interlocked.Increment(ref _startedCount);
        _started.Writer.TryWrite(generation);
        var index = 0;
        while (true)
        {
            var step = await generation.Steps.Reader.ReadAsync(cancellationToken);
            if (step.Failure is { } failure) throw failure;
            yield return new GeneratedToken(index++, step.Text, step.Finish);
            if (step.Finish is not null) yield break;
        }
    }

    public void Dispose()
    {
    }

    internal sealed record Step(string Text, FinishReason? Finish, Exception? Failure);

    internal sealed class Generation
    {
        private readonly TaskCompletionSource _cancelled = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Generation(InferenceRequest request, CancellationToken token)
        {
            Request = request;
            token.Register(() => _cancelled.TrySetResult());
        }

        public InferenceRequest Request { get; }

        public Channel<Step> Steps { get; } = Channel.CreateUnbounded<Step>();

        /// <summary>Completes when the engine's cancellation token fires.</summary>
        public Task Cancelled => _cancelled.Task;

        public void Emit(string text) => Steps.Writer.TryWrite(new Step(text, null, null));

        public void Finish(string text = "", FinishReason reason = FinishReason.Stop) => Steps.Writer.TryWrite(new Step(text, reason, null));

        public void Fail(Exception failure) => Steps.Writer.TryWrite(new Step(string.Empty, null, failure));
    }
}
