namespace P2PInference.Facilities.Net.Host;

/// <summary>
/// Counts a connection's stream handlers that are still running, so the connection's accept loop can
/// wait for them when it ends. A count instead of a list of their tasks: a finished handler's task
/// would otherwise stay referenced until the next stream arrives, and on a connection that serves one
/// request and then idles (most of a DHT node's connections) that is for the connection's whole life.
/// </summary>
internal sealed class RunningHandlers
{
    private int _running;
    private TaskCompletionSource? _drained;

    public void Started() => Interlocked.Increment(ref _running);

    public void Finished()
    {
        if (Interlocked.Decrement(ref _running) == 0) Volatile.Read(ref _drained)?.TrySetResult();
    }

    /// <summary>Completes when no handler runs; called once, after the last <see cref="Started"/>.</summary>
    public Task WhenDrainedAsync()
    {
        if (Volatile.Read(ref _running) == 0) return Task.CompletedTask;
        var drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // A full fence between publishing the signal and reading the count, so a handler finishing
        // now either sees the signal or has already brought the count to zero.
        Interlocked.Exchange(ref _drained, drained);
        return Volatile.Read(ref _running) == 0 ? Task.CompletedTask : drained.Task;
    }
}
