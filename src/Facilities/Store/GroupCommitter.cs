using FASTER.core;

namespace P2PInference.Facilities.Store;

/// <summary>
/// Group commit over a <see cref="FasterLog"/>: writers that arrive while a commit is being made
/// durable wait together for the next one, so N concurrent writers cost about one flush, not N.
/// </summary>
internal sealed class GroupCommitter
{
    private readonly FasterLog _log;
    private readonly Lock _gate = new();
    private TaskCompletionSource? _next;
    private bool _running;
    private Exception? _failed;
    private Task _loop = Task.CompletedTask;

    private readonly Action? _afterCommit;

    /// <param name="afterCommit">Runs after each commit, before its writers are released: checks the commit record and prunes old ones; throwing fails the commit.</param>
    public GroupCommitter(FasterLog log, Action? afterCommit = null)
    {
        _log = log;
        _afterCommit = afterCommit;
    }

    /// <summary>Completes once the entry enqueued at <paramref name="address"/> is durable.</summary>
    public Task WaitForCommitAsync(long address)
    {
        if (_log.CommittedUntilAddress > address)
        {
            return Task.CompletedTask;
        }

        lock (_gate)
        {
            if (_failed is not null)
            {
                return Task.FromException(_failed);
            }

            // Joining after the enqueue guarantees the commit that serves this batch starts after
            // the entry is in the log, so it covers it.
            _next ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var task = _next.Task;
            if (!_running)
            {
                _running = true;
                _loop = CommitLoopAsync();
            }

            return task;
        }
    }

    /// <summary>True once a commit failed or the log was shut down: no write will be made durable any more.</summary>
    public bool HasFailed
    {
        get
        {
            lock (_gate)
            {
                return _failed is not null;
            }
        }
    }

    /// <summary>Fails every waiter and every later one: the log is gone (shutdown or simulated crash).</summary>
    public void Fail(Exception reason)
    {
        TaskCompletionSource? pending;
        lock (_gate)
        {
            _failed ??= reason;
            pending = _next;
            _next = null;
        }

        pending?.TrySetException(reason);
    }

    /// <summary>Completes once no commit is running (after <see cref="Fail"/>, none will start again).</summary>
    public Task IdleAsync()
    {
        lock (_gate)
        {
            return _loop;
        }
    }

    private async Task CommitLoopAsync()
    {
        // Leaves the caller (and its lock) at once, as Task.Run did, but stays on the caller's
        // context when it has one (a simulation's); without one it continues on the thread pool.
        await Task.Yield();
        while (true)
        {
            TaskCompletionSource batch;
            lock (_gate)
            {
                if (_next is null || _failed is not null)
                {
                    _running = false;
                    return;
                }

                batch = _next;
                _next = null;
            }

            try
            {
                await _log.CommitAsync();
                _afterCommit?.Invoke();
                batch.TrySetResult();
            }
            catch (Exception e)
            {
                var failure = new StoreException("The write-ahead log could not be made durable: " + e.Message, inner: e);
                batch.TrySetException(failure);
                Fail(failure);
            }
        }
    }
}
