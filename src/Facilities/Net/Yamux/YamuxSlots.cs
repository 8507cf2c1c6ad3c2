namespace P2PInference.Facilities.Net.Yamux;

/// <summary>
/// A counting semaphore kept inline in the session, under the session's lock: a free slot is a
/// counter, and waiters exist only while there is contention. A <see cref="SemaphoreSlim"/> cost a
/// session two objects apiece for its write lock and its ACK backlog, held by every connection for
/// its whole life (tens of thousands in a simulation) though most never wait for either.
/// </summary>
/// <remarks>
/// A mutable struct: it lives in a field of its owner and is only used through that field. Waiters
/// are served first in, first out, as a semaphore's are; each one's continuation runs asynchronously,
/// so granting a slot under the owner's lock runs no code of the waiter's.
/// </remarks>
internal struct YamuxSlots(int count)
{
    private readonly int _count = count;
    private int _free = count;
    private Queue<TaskCompletionSource<bool>>? _waiters;

    /// <summary>Caller holds the owner's lock: takes a slot if one is free and nobody waits for it.</summary>
    public bool TryTake()
    {
        if (_free == 0)
        {
            return false;
        }

        _free--;
        return true;
    }

    /// <summary>
    /// Caller holds the owner's lock, and <see cref="TryTake"/> failed: a waiter that completes with true
    /// once it holds a slot, with false when the owner failed it (<see cref="FailAll"/>). A waiter that gives up
    /// completes itself with false; a later <see cref="Release"/> then skips it.
    /// </summary>
    public TaskCompletionSource<bool> Enqueue()
    {
        var waiter = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        (_waiters ??= new Queue<TaskCompletionSource<bool>>()).Enqueue(waiter);
        return waiter;
    }

    /// <summary>Caller holds the owner's lock: gives a slot back, to the first waiter still waiting if there is one.</summary>
    public void Release()
    {
        while (_waiters is { } waiters && waiters.TryDequeue(out var waiter))
        {
            if (waiters.Count == 0)
            {
                _waiters = null;
            }

            // False when the waiter gave up meanwhile: the slot goes to the next one.
            if (waiter.TrySetResult(true))
            {
                return;
            }
        }

        // One release too many would let two writers in at once and interleave their frames: fail loudly, as a semaphore does.
        if (_free == _count) throw new SemaphoreFullException("a Yamux slot was released that was not taken");
        _free++;
    }

    /// <summary>Caller holds the owner's lock: every waiter gives up.</summary>
    public void FailAll()
    {
        if (_waiters is not { } waiters)
        {
            return;
        }

        _waiters = null;
        while (waiters.TryDequeue(out var waiter))
        {
            waiter.TrySetResult(false);
        }
    }
}
