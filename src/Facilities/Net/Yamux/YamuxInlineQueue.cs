namespace P2PInference.Facilities.Net.Yamux;

/// <summary>
/// A first-in, first-out queue whose first item is kept inline, in its owner's field: a session
/// mostly has at most one control frame to send or one inbound stream to hand over at a time, and
/// a <see cref="Queue{T}"/> per session, with the array it grows and keeps, cost every connection
/// about a hundred bytes for each of them for its whole life. A queue exists only while two or more items wait.
/// </summary>
/// <remarks>A mutable struct, used only through its owner's field and under the owner's lock.</remarks>
internal struct YamuxInlineQueue<T>
{
    private T _first;
    private bool _hasFirst;
    // Non-null only while it holds items, all queued after _first.
    private Queue<T>? _more;

    public readonly int Count => (_hasFirst ? 1 : 0) + (_more?.Count ?? 0);

    public void Enqueue(T item)
    {
        if (!_hasFirst)
        {
            _first = item;
            _hasFirst = true;
        }
        else
        {
            (_more ??= new Queue<T>()).Enqueue(item);
        }
    }

    public bool TryDequeue(out T item)
    {
        if (!_hasFirst)
        {
            item = default!;
            return false;
        }

        item = _first;
        if (_more is { } more)
        {
            _first = more.Dequeue();
            if (more.Count == 0)
            {
                _more = null;
            }
        }
        else
        {
            _first = default!;
            _hasFirst = false;
        }

        return true;
    }
}
