using System.Buffers;
using System.Runtime.ExceptionServices;
using System.Threading.Tasks.Sources;

namespace P2PInference.TestKit.Network;

/// <summary>
/// One direction of an in-memory connection: a bounded byte queue from a writer to a reader.
/// Without faults a write is copied straight into the reader's queue (no timer, no extra hop).
/// With faults a write becomes chunks "in flight", each with a due time; they move to the reader's
/// queue in order once due and not held/stalled, driven by one timer on the network's TimeProvider.
/// Buffered bytes (in flight + unread) are bounded: a writer past the bound waits for the reader.
/// </summary>
internal sealed class MemoryFlow
{
    // Large writes are taken in pieces so that one write cannot overshoot the buffer bound by much.
    private const int MaxPiece = 64 * 1024;
    // Small writes on the fast path share a chunk, so a chatty writer costs one rental per few KiB.
    private const int MinChunk = 4096;
    private static readonly TimeSpan MinTimerDelay = TimeSpan.FromTicks(1);
    // A cancelled wait completes the shared signal itself instead of racing it through
    // ContextAwaits.WaitOrCancelAsync, which costs two more tasks and state machines per wait: an idle
    // connection always has a read waiting, tens of thousands of them in a large simulation. Other
    // waiters woken with it look again and wait on a new signal.
    private static readonly Action<object?> s_wake = static s => ((TaskCompletionSource)s!).TrySetResult();
    private static readonly Action<object?> s_wakeReader = static s => ((MemoryFlow)s!).WakeReader();

    private readonly object _gate = new();
    private readonly Queue<Chunk> _inFlight = new();
    private readonly Queue<Chunk> _readable = new();
    private readonly MemoryConnection _connection;
    private readonly TimeProvider _time;
    private readonly long _capacity;
    private readonly int _seed;
    private Random? _random;
    private Chunk? _readableTail;
    private long _buffered;
    private long _sent;
    private long _lastDue; // timestamps of the TimeProvider's monotonic clock
    private ITimer? _timer;
    private readonly ReadWait _readWait = new();
    private Chunk? _spareChunk;
    private TaskCompletionSource? _dataSignal;
    private TaskCompletionSource? _spaceSignal;
    private bool _writerCompleted;
    private bool _endOfStream;
    private bool _readerClosed;
    private bool _limitReached;
    private IOException? _error;
    private bool _drainBeforeError;
    private bool _shutDown;

    public MemoryFlow(MemoryConnection connection, InMemoryLink link, TimeProvider time, long capacity, int seed)
    {
        _connection = connection;
        Link = link;
        _time = time;
        _capacity = capacity;
        _seed = seed;
    }

    public InMemoryLink Link { get; }

    private Random Random => _random ??= new Random(_seed);

    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (data.IsEmpty) return;
        Link.CountWrite(data.Span);
        _connection.NoteActivity();
        while (true)
        {
            TaskCompletionSource? wait = null;
            var reset = false;
            // The clock is read outside the lock: a fake clock may fire timers (other flows' deliveries) from inside.
            var now = Link.IsClean ? 0 : _time.GetTimestamp();
            lock (_gate)
            {
                ThrowIfCannotWrite();
                if (_readerClosed) return; // like a peer that closed: what we send is dropped
                while (!data.IsEmpty && _buffered < _capacity && !_limitReached)
                {
                    var n = Math.Min(data.Length, MaxPiece);
                    if (Link.IsClean && _inFlight.Count == 0)
                        AppendReadable(data.Span[..n]);
                    else
                        reset |= EnqueueInFlight(ref n, data.Span[..n], now == 0 ? _time.GetTimestamp() : now);
                    data = data[n..];
                }
                if (!data.IsEmpty && !_limitReached) wait = Await(ref _spaceSignal);
            }
            if (reset) _connection.Abort("connection reset: data limit reached", drain: true);
            if (_limitReached && !data.IsEmpty) throw new IOException("connection reset: data limit reached");
            if (wait is null) return;
            var registration = cancellationToken.UnsafeRegister(s_wake, wait);
            try
            {
                await wait.Task;
            }
            finally
            {
                registration.Unregister();
            }
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    public ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        // A reader on a custom context (the simulation's) that has to wait takes the flow's reusable
        // wait instead of an async method's state machine and a task per wait. It resumes the reader
        // from a step posted to that context, as a task's continuation would. Cancellation, errors and
        // readers without such a context, or a second concurrent reader, take the general path.
        if (!cancellationToken.IsCancellationRequested
            && SynchronizationContext.Current is { } context && context.GetType() != typeof(SynchronizationContext))
        {
            lock (_gate)
            {
                if (_error is null)
                {
                    if (TryReadLocked(buffer, out var n)) return new ValueTask<int>(n);
                    if (_readWait.IsFree) return _readWait.Arm(this, context, buffer, cancellationToken);
                }
            }
        }
        return ReadSlowAsync(buffer, cancellationToken);
    }

    private async ValueTask<int> ReadSlowAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        while (true)
        {
            TaskCompletionSource wait;
            lock (_gate)
            {
                if (TryReadLocked(buffer, out var n)) return n;
                wait = Await(ref _dataSignal);
            }
            var registration = cancellationToken.UnsafeRegister(s_wake, wait);
            try
            {
                await wait.Task;
            }
            finally
            {
                registration.Unregister();
            }
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    /// <summary>
    /// Reads what is there: data, or 0 at the end of the stream or once the reader closed; false when
    /// the reader has to wait. Throws the flow's error once nothing is left to drain. Caller holds the lock.
    /// </summary>
    private bool TryReadLocked(Memory<byte> buffer, out int read)
    {
        read = 0;
        if (_readable.TryPeek(out var chunk) && (_error is null || _drainBeforeError))
        {
            // A zero-byte read waits for data without taking any, as socket streams do.
            if (buffer.IsEmpty) return true;
            var n = Math.Min(buffer.Length, chunk.End - chunk.Start);
            chunk.Buffer.AsSpan(chunk.Start, n).CopyTo(buffer.Span);
            chunk.Start += n;
            if (chunk.Start == chunk.End)
            {
                _readable.Dequeue();
                if (ReferenceEquals(_readableTail, chunk)) _readableTail = null;
                ReturnChunk(chunk);
            }
            _buffered -= n;
            if (_buffered < _capacity) Signal(ref _spaceSignal);
            Link.CountRead(n);
            read = n;
            return true;
        }
        if (_error is not null) throw new IOException(_error.Message, _error);
        return _endOfStream || _readerClosed;
    }

    /// <summary>The writer is done: the reader sees end of stream after everything sent before.</summary>
    public void CompleteWriter()
    {
        bool reset;
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            if (_writerCompleted || _error is not null) return;
            _writerCompleted = true;
            if (_readerClosed) return;
            if (Link.IsClean && _inFlight.Count == 0)
            {
                _endOfStream = true;
                SignalData();
                return;
            }
            var due = Math.Max(now, _lastDue);
            _lastDue = due;
            _inFlight.Enqueue(Chunk.Marker(ChunkKind.EndOfStream, due));
            reset = Pump(now);
        }
        if (reset) _connection.Abort("connection reset: data limit reached", drain: true);
    }

    /// <summary>The reader is gone: drop what is buffered, release blocked writers, drop later writes.</summary>
    public void CloseReader()
    {
        lock (_gate)
        {
            if (_readerClosed) return;
            _readerClosed = true;
            DropAll();
            SignalData();
            Signal(ref _spaceSignal);
        }
    }

    /// <summary>
    /// Aborts this direction: reads and writes throw <paramref name="error"/>'s message as an
    /// <see cref="IOException"/>. With <paramref name="drain"/> the reader first gets what was already
    /// delivered to it; bytes still in flight are lost either way.
    /// </summary>
    public void Abort(IOException error, bool drain)
    {
        lock (_gate)
        {
            if (_error is not null) return;
            _error = error;
            _drainBeforeError = drain;
            DropInFlight();
            if (!drain) DropReadable();
            SignalData();
            Signal(ref _spaceSignal);
        }
    }

    /// <summary>Re-examines in-flight chunks, after the link was released or a partition healed.</summary>
    public void Kick()
    {
        bool reset;
        var now = _time.GetTimestamp();
        lock (_gate) reset = Pump(now);
        if (reset) _connection.Abort("connection reset: data limit reached", drain: true);
    }

    /// <summary>The connection is finished: stop the timer so nothing keeps this flow alive.</summary>
    public void Shutdown()
    {
        ITimer? timer;
        lock (_gate)
        {
            _shutDown = true;
            timer = _timer;
            _timer = null;
            DropInFlight();
        }
        timer?.Dispose();
    }

    private void ThrowIfCannotWrite()
    {
        if (_error is not null) throw new IOException(_error.Message, _error);
        if (_limitReached) throw new IOException("connection reset: data limit reached");
        if (_writerCompleted) throw new ObjectDisposedException(nameof(MemoryFlow), "the connection was closed for writing");
    }

    private void AppendReadable(ReadOnlySpan<byte> bytes)
    {
        var tail = _readableTail;
        if (tail is not null && tail.Buffer.Length - tail.End >= bytes.Length)
        {
            bytes.CopyTo(tail.Buffer.AsSpan(tail.End));
            tail.End += bytes.Length;
        }
        else
        {
            var chunk = RentChunk(Math.Max(bytes.Length, MinChunk), 0);
            bytes.CopyTo(chunk.Buffer);
            chunk.End = bytes.Length;
            _readable.Enqueue(chunk);
            _readableTail = chunk;
        }
        _buffered += bytes.Length;
        _sent += bytes.Length;
        SignalData();
    }

    /// <summary>Puts up to <paramref name="count"/> bytes in flight with their faults; returns whether a reset is due now.</summary>
    private bool EnqueueInFlight(ref int count, ReadOnlySpan<byte> bytes, long now)
    {
        var link = Link;
        var limit = link.ResetAfterBytes;
        var hitLimit = false;
        if (limit is { } l && _sent + count >= l)
        {
            hitLimit = true;
            count = (int)Math.Max(0, l - _sent);
            bytes = bytes[..count];
        }

        if (count > 0)
        {
            var due = link.ReserveBandwidth(_time, now, count);
            var latency = link.Latency;
            var jitter = link.Jitter;
            if (jitter > TimeSpan.Zero)
                latency += TimeSpan.FromTicks((long)(((Random.NextDouble() * 2) - 1) * jitter.Ticks));
            if (latency > TimeSpan.Zero) due += ToTimestamp(latency);
            due = Math.Max(due, _lastDue);
            _lastDue = due;

            var slice = link.MaxSliceSize;
            var offset = 0;
            while (offset < count)
            {
                var size = slice > 0 ? Math.Min(count - offset, Random.Next(1, slice + 1)) : count - offset;
                var chunk = RentChunk(size, due);
                bytes.Slice(offset, size).CopyTo(chunk.Buffer);
                chunk.End = size;
                Corrupt(chunk.Buffer.AsSpan(0, size), _sent + offset, link);
                _inFlight.Enqueue(chunk);
                offset += size;
            }
            _sent += count;
            _buffered += count;
        }
        if (hitLimit)
        {
            _limitReached = true;
            _inFlight.Enqueue(Chunk.Marker(ChunkKind.Reset, Math.Max(now, _lastDue)));
        }
        return Pump(now);
    }

    private void Corrupt(Span<byte> bytes, long streamOffset, InMemoryLink link)
    {
        var at = link.CorruptByteAt;
        if (at is { } a && a >= streamOffset && a < streamOffset + bytes.Length)
            bytes[(int)(a - streamOffset)] ^= (byte)(1 << Random.Next(8));
        var p = link.CorruptionProbability;
        if (p > 0)
        {
            for (var i = 0; i < bytes.Length; i++)
                if (Random.NextDouble() < p) bytes[i] ^= (byte)(1 << Random.Next(8));
        }
    }

    /// <summary>Moves due chunks to the reader, in order; arms the timer for the next. Returns whether a reset marker was reached.</summary>
    private bool Pump(long now)
    {
        if (_error is not null || _shutDown || Link.IsBlocked) return false;
        var delivered = false;
        var reset = false;
        while (_inFlight.TryPeek(out var chunk) && chunk.Due <= now)
        {
            _inFlight.Dequeue();
            switch (chunk.Kind)
            {
                case ChunkKind.Data:
                    _readable.Enqueue(chunk);
                    _readableTail = null; // delivered pieces stay separate: slicing must be visible to reads
                    break;
                case ChunkKind.EndOfStream:
                    _endOfStream = true;
                    break;
                case ChunkKind.Reset:
                    reset = true;
                    break;
            }
            delivered = true;
            if (reset) break;
        }
        if (delivered) SignalData();
        if (!reset && _inFlight.TryPeek(out var next))
        {
            var dueIn = _time.GetElapsedTime(now, next.Due);
            // Never zero: a fake clock fires a zero-due timer inside Change, under this lock.
            if (dueIn < MinTimerDelay) dueIn = MinTimerDelay;
            if (_timer is null)
                _timer = _time.CreateTimer(static state => ((MemoryFlow)state!).Kick(), this, dueIn, Timeout.InfiniteTimeSpan);
            else
                _timer.Change(dueIn, Timeout.InfiniteTimeSpan);
        }
        return reset;
    }

    private void DropAll()
    {
        DropInFlight();
        DropReadable();
    }

    private void DropInFlight()
    {
        while (_inFlight.TryDequeue(out var chunk))
        {
            _buffered -= chunk.End - chunk.Start;
            ReturnChunk(chunk);
        }
    }

    private void DropReadable()
    {
        while (_readable.TryDequeue(out var chunk))
        {
            _buffered -= chunk.End - chunk.Start;
            ReturnChunk(chunk);
        }
        _readableTail = null;
    }

    /// <summary>The pending signal, a new one when there is none or a cancelled wait completed it. Caller holds the lock.</summary>
    private static TaskCompletionSource Await(ref TaskCompletionSource? signal)
    {
        if (signal is null || signal.Task.IsCompleted) signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        return signal;
    }


    /// <summary>Wakes every waiting reader. Caller holds the lock.</summary>
    private void SignalData()
    {
        _readWait.Wake();
        Signal(ref _dataSignal);
    }

    private void WakeReader()
    {
        lock (_gate) _readWait.Wake();
    }

    /// <summary>A chunk for data, reusing the flow's spare one: a chatty flow otherwise allocates one per few reads. Caller holds the lock.</summary>
    private Chunk RentChunk(int size, long due)
    {
        var chunk = _spareChunk;
        if (chunk is null) return Chunk.Rent(size, due);
        _spareChunk = null;
        chunk.Reuse(size, due);
        return chunk;
    }

    /// <summary>Caller holds the lock.</summary>
    private void ReturnChunk(Chunk chunk)
    {
        chunk.Return();
        if (chunk.Kind == ChunkKind.Data) _spareChunk = chunk;
    }

    private static void Signal(ref TaskCompletionSource? signal)
    {
        var s = signal;
        if (s is null) return;
        signal = null;
        s.TrySetResult();
    }

    private long ToTimestamp(TimeSpan duration) => ToTimestamp(_time, duration);

    /// <summary>A duration in the provider's timestamp units, rounded up so that a delay is never lost.</summary>
    internal static long ToTimestamp(TimeProvider time, TimeSpan duration) =>
        (long)Math.Ceiling(duration.Ticks * (double)time.TimestampFrequency / TimeSpan.TicksPerSecond);

    /// <summary>
    /// The pending read of the flow's one reader on a custom context, reused for every wait. A wake
    /// posts one step to that context with the reader's state (its state machine) as the state, as a
    /// task continuation would; the step retries the read as the waiting loop did and, when it has an
    /// answer, resumes the reader within the same step.
    /// </summary>
    private sealed class ReadWait : IValueTaskSource<int>
    {
        private static readonly Action<object?> s_woken = static _ => { };

        private readonly SendOrPostCallback _retry;
        private MemoryFlow? _flow;
        private SynchronizationContext? _context;
        private Memory<byte> _buffer;
        private CancellationToken _cancellationToken;
        private CancellationTokenRegistration _registration;
        private Action<object?>? _continuation;
        private object? _state;
        private bool _completed;
        private int _result;
        private ExceptionDispatchInfo? _error;
        private short _version;
        private bool _inUse;

        public ReadWait() => _retry = Retry;

        /// <summary>Whether a reader waits and has not been woken yet. Read and changed under the flow's lock.</summary>
        public bool IsArmed { get; private set; }

        /// <summary>Whether a reader may take this wait: the last one holds it until it has its result.</summary>
        public bool IsFree => !Volatile.Read(ref _inUse);

        /// <summary>Caller holds the flow's lock.</summary>
        public ValueTask<int> Arm(MemoryFlow flow, SynchronizationContext context, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            _inUse = true;
            _flow = flow;
            _context = context;
            _buffer = buffer;
            _cancellationToken = cancellationToken;
            _continuation = null;
            _state = null;
            _completed = false;
            _result = 0;
            _error = null;
            IsArmed = true;
            _registration = cancellationToken.UnsafeRegister(s_wakeReader, flow);
            return new ValueTask<int>(this, _version);
        }

        /// <summary>Schedules the retry if a reader is still waiting. Caller holds the flow's lock.</summary>
        public void Wake()
        {
            if (!IsArmed) return;
            IsArmed = false;
            var continuation = Interlocked.CompareExchange(ref _continuation, s_woken, null);
            if (continuation is not null) _context!.Post(_retry, _state);
        }

        public ValueTaskSourceStatus GetStatus(short token)
        {
            Validate(token);
            if (!Volatile.Read(ref _completed)) return ValueTaskSourceStatus.Pending;
            return _error is null ? ValueTaskSourceStatus.Succeeded
                : _error.SourceException is OperationCanceledException ? ValueTaskSourceStatus.Canceled
                : ValueTaskSourceStatus.Faulted;
        }

        public int GetResult(short token)
        {
            Validate(token);
            if (!_completed) throw new InvalidOperationException("the read has not completed");
            var result = _result;
            var error = _error;
            _flow = null;
            _context = null;
            _buffer = default;
            _cancellationToken = default;
            _continuation = null;
            _state = null;
            _error = null;
            _version++;
            Volatile.Write(ref _inUse, false);
            error?.Throw();
            return result;
        }

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        {
            Validate(token);
            _state = state;
            if (Interlocked.CompareExchange(ref _continuation, continuation, null) is not null)
            {
                // Woken before the reader registered: the retry takes over the continuation now.
                _continuation = continuation;
                _context!.Post(_retry, state);
            }
        }

        /// <summary>The woken reader's step: what the waiting loop did after its wait completed.</summary>
        private void Retry(object? state)
        {
            var flow = _flow!;
            var done = true;
            lock (flow._gate)
            {
                try
                {
                    _cancellationToken.ThrowIfCancellationRequested();
                    done = flow.TryReadLocked(_buffer, out _result);
                }
                catch (Exception e)
                {
                    _error = ExceptionDispatchInfo.Capture(e);
                }
                if (!done)
                {
                    IsArmed = true; // woken with nothing for it: wait again, as the loop would
                    return;
                }
            }
            _registration.Unregister();
            Volatile.Write(ref _completed, true);
            _continuation!(state);
        }

        private void Validate(short token)
        {
            if (token != _version) throw new InvalidOperationException("the read was awaited twice");
        }
    }

    private enum ChunkKind
    {
        Data,
        EndOfStream,
        Reset,
    }

    private sealed class Chunk
    {
        private Chunk(byte[] buffer, long due, ChunkKind kind)
        {
            Buffer = buffer;
            Due = due;
            Kind = kind;
        }

        public byte[] Buffer { get; private set; }
        public int Start { get; set; }
        public int End { get; set; }
        public long Due { get; private set; }
        public ChunkKind Kind { get; }

        public static Chunk Rent(int size, long due) => new(ArrayPool<byte>.Shared.Rent(size), due, ChunkKind.Data);

        /// <summary>Makes a returned data chunk a fresh one.</summary>
        public void Reuse(int size, long due)
        {
            Buffer = ArrayPool<byte>.Shared.Rent(size);
            Due = due;
        }

        public static Chunk Marker(ChunkKind kind, long due) => new([], due, kind);

        public void Return()
        {
            if (Buffer.Length > 0) ArrayPool<byte>.Shared.Return(Buffer);
            Buffer = [];
            Start = End = 0;
        }
    }
}
