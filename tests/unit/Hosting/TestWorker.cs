using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Hosting;

namespace P2PInference.Tests.Unit.Hosting;

/// <summary>
/// A tiny worker: <c>test.echo</c> answers at once, <c>test.slow</c> answers when the test releases
/// it (or fails when its call is cancelled), <c>test.count</c> streams three items.
/// </summary>
internal sealed class TestWorker(Action<string> record) : IWorker
{
    public const string Topic = "p2pinference/test";
    public const string Echo = "test.echo";
    public const string Slow = "test.slow";

    private readonly TaskCompletionSource _slowEntered = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string Role => "test";

    /// <summary>Completes the pending <c>test.slow</c> calls.</summary>
    public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when a <c>test.slow</c> call is running.</summary>
    public Task SlowEntered => _slowEntered.Task;

    /// <summary>When set, StartAsync waits for it (to observe the runtime before it is ready).</summary>
    public Task? StartGate { get; init; }

    public Exception? StartFailure { get; init; }

    public bool SlowCallWasCancelled { get; private set; }

    public async Task<IReadOnlyList<string>> StartAsync(WorkerContext context, CancellationToken cancellationToken)
    {
        record("worker:start");
        if (StartGate is not null) await StartGate.WaitAsync(cancellationToken);
        if (StartFailure is not null) throw StartFailure;
        context.Server.Respond(Echo, (request, _) => ValueTask.FromResult(request));
        context.Server.Respond(Slow, async (request, call) =>
        {
            _slowEntered.TrySetResult();
            try
            {
                await Release.Task.WaitAsync(call.CancellationToken);
            }
            catch (OperationCanceledException)
            {
                SlowCallWasCancelled = true;
                throw;
            }

            return System.Text.Encoding.UTF8.GetBytes("done");
        });
        return [Topic];
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        record("worker:stop");
        return Task.CompletedTask;
    }
}
