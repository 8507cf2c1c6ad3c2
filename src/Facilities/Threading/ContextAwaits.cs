namespace P2PInference.Facilities.Threading;

/// <summary>
/// Cancellable waits built from plain awaits, so they resume on the caller's
/// <see cref="SynchronizationContext"/> when it has one (a simulation's single thread) and on the
/// thread pool otherwise (production, unchanged).
/// </summary>
/// <remarks>
/// The BCL's <see cref="Task.WaitAsync(CancellationToken)"/> and
/// <see cref="SemaphoreSlim.WaitAsync(CancellationToken)"/> complete through a completion action that
/// the runtime queues to the thread pool whenever the awaited task was created with
/// <see cref="TaskCreationOptions.RunContinuationsAsynchronously"/> (as every signal here is, and
/// SemaphoreSlim's own waiters are). Under a simulation that continuation then arrives from another
/// thread, after the executor may already have decided the system was idle.
/// </remarks>
public static class ContextAwaits
{
    /// <summary>Waits for <paramref name="task"/> or the token, like <see cref="Task.WaitAsync(CancellationToken)"/>.</summary>
    /// <exception cref="OperationCanceledException">The token was cancelled before the task finished.</exception>
    public static async Task WaitOrCancelAsync(this Task task, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(task);
        if (!task.IsCompleted && cancellationToken.CanBeCanceled)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            await using (cancellationToken.Register(static s => ((TaskCompletionSource)s!).TrySetResult(), first))
            {
                _ = SignalWhenDoneAsync(task, first);
                await first.Task;
            }
            if (!task.IsCompleted) throw new OperationCanceledException(cancellationToken);
        }
        await task;
    }

    /// <inheritdoc cref="WaitOrCancelAsync(Task, CancellationToken)"/>
    public static async Task<T> WaitOrCancelAsync<T>(this Task<T> task, CancellationToken cancellationToken)
    {
        await ((Task)task).WaitOrCancelAsync(cancellationToken);
        return await task;
    }

    /// <summary>
    /// Marks <paramref name="task"/>'s failure observed once it ends, so a fire-and-forget task whose
    /// result nobody asks for is not reported by the finalizer; an await instead of
    /// <c>ContinueWith(TaskScheduler.Default)</c>, so it stays on the caller's context.
    /// </summary>
    public static async Task ObserveFailureAsync(this Task task)
    {
        ArgumentNullException.ThrowIfNull(task);
        await task.ConfigureAwait(ConfigureAwaitOptions.ContinueOnCapturedContext | ConfigureAwaitOptions.SuppressThrowing);
        _ = task.Exception;
    }

    /// <summary>
    /// The first of two tasks to finish, like <see cref="Task.WhenAny(Task, Task)"/>, which completes through a
    /// thread-pool completion action when a task was created with
    /// <see cref="TaskCreationOptions.RunContinuationsAsynchronously"/> (a connection's completion is).
    /// </summary>
    public static async Task<Task> FirstOfAsync(Task first, Task second)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        if (first.IsCompleted) return first;
        if (second.IsCompleted) return second;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _ = SignalWhenDoneAsync(first, done);
        _ = SignalWhenDoneAsync(second, done);
        await done.Task;
        return first.IsCompleted ? first : second;
    }

    /// <summary>Enters the semaphore, like <see cref="SemaphoreSlim.WaitAsync(CancellationToken)"/>; a cancelled wait gives back the slot it would have got.</summary>
    /// <exception cref="OperationCanceledException">The token was cancelled before the semaphore was entered.</exception>
    public static async Task EnterAsync(this SemaphoreSlim semaphore, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(semaphore);
        cancellationToken.ThrowIfCancellationRequested();
        var entered = semaphore.WaitAsync();
        try
        {
            await entered.WaitOrCancelAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // The wait gave up (entered, having no token, never cancels), so the caller will not release:
            // whatever slot the wait gets, now or later, goes back. Not only when it has none yet: on
            // another thread the slot can come between the wait's check and this catch, and a slot kept
            // so was never released (a Yamux session's write lock, held for ever, hung its close).
            _ = ReleaseWhenEnteredAsync(semaphore, entered);
            throw;
        }
    }

    private static async Task SignalWhenDoneAsync(Task task, TaskCompletionSource signal)
    {
        await task.ConfigureAwait(ConfigureAwaitOptions.ContinueOnCapturedContext | ConfigureAwaitOptions.SuppressThrowing);
        signal.TrySetResult();
    }

    private static async Task ReleaseWhenEnteredAsync(SemaphoreSlim semaphore, Task entered)
    {
        await entered;
        semaphore.Release();
    }
}
