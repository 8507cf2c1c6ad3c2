namespace P2PInference.Workers.Processor;

/// <summary>
/// Admits generations: at most <c>maxConcurrency</c> hold a slot, up to <c>maxQueue</c> wait for one
/// in arrival order, and the rest are turned away at once (so a caller learns to go elsewhere rather
/// than wait behind an unbounded line). A waiter whose caller gives up leaves the queue.
/// </summary>
internal sealed class InferenceScheduler
{
    private readonly object _gate = new();
    private readonly LinkedList<Waiter> _queue = new();
    private readonly int _maxConcurrency;
    private readonly int _maxQueue;
    private int _active;

    public InferenceScheduler(int maxConcurrency, int maxQueue)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxConcurrency, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(maxQueue);
        _maxConcurrency = maxConcurrency;
        _maxQueue = maxQueue;
    }

    public int MaxConcurrency => _maxConcurrency;

    public int MaxQueue => _maxQueue;

    public int Active
    {
        get
        {
            lock (_gate) return _active;
        }
    }

    public int Queued
    {
        get
        {
            lock (_gate) return _queue.Count;
        }
    }

    /// <summary>Raised (outside the lock) whenever a request joins the queue; tests wait on it instead of polling.</summary>
    public event Action? Enqueued;

    /// <summary>
    /// A slot, now or after waiting in line. Null when the queue is full. Throws
    /// <see cref="OperationCanceledException"/> when <paramref name="cancellationToken"/> fires while waiting.
    /// </summary>
    public ValueTask<Lease?> TryAcquireAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Waiter waiter;
        lock (_gate)
        {
            if (_active < _maxConcurrency && _queue.Count == 0)
            {
                _active++;
                return ValueTask.FromResult<Lease?>(new Lease(this));
            }
            if (_queue.Count >= _maxQueue) return ValueTask.FromResult<Lease?>(null);
            waiter = new Waiter();
            waiter.Node = _queue.AddLast(waiter);
        }
        Enqueued?.Invoke();
        return WaitAsync(waiter, cancellationToken);
    }

    private async ValueTask<Lease?> WaitAsync(Waiter waiter, CancellationToken cancellationToken)
    {
        await using (cancellationToken.Register(static state =>
        {
            var (self, w) = ((InferenceScheduler, Waiter))state!;
            self.Abandon(w);
        }, (this, waiter)))
        {
            await waiter.Slot.Task;
        }
        return new Lease(this);
    }

    private bool Abandon(Waiter waiter)
    {
        lock (_gate)
        {
            // Whoever unlinks the node owns the waiter: a slot handed over already stays handed over.
            if (waiter.Node?.List is null) return false;
            _queue.Remove(waiter.Node);
        }
        waiter.Slot.TrySetCanceled();
        return true;
    }

    private void Release()
    {
        Waiter? next = null;
        lock (_gate)
        {
            if (_queue.First is { } first)
            {
                // The slot passes straight to the next in line, so _active does not change.
                next = first.Value;
                _queue.RemoveFirst();
            }
            else
            {
                _active--;
            }
        }
        next?.Slot.TrySetResult();
    }

    private sealed class Waiter
    {
        public TaskCompletionSource Slot { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public LinkedListNode<Waiter>? Node { get; set; }
    }

    /// <summary>One admitted generation; disposing it frees the slot for the next in line.</summary>
    internal sealed class Lease(InferenceScheduler owner) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) owner.Release();
        }
    }
}
