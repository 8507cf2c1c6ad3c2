using System.Buffers;
using System.Collections.Concurrent;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Yamux;

/// <summary>
/// A yamux (<c>/yamux/1.0.0</c>) session over one connection: many <see cref="YamuxStream"/>s with
/// per-stream flow control, ping, go-away and keep-alive. One read loop parses every frame; writers
/// take turns on the connection under one lock, and control frames the read loop produces
/// (window updates, pongs, resets) are queued and written without ever blocking that loop, so two
/// sessions writing at each other cannot deadlock.
/// </summary>
public sealed class YamuxSession : IAsyncDisposable
{
    /// <summary>
    /// Header plus payload of a full data frame fill exactly one Noise transport frame (65519
    /// plaintext bytes), and the frame stays small enough for streams to interleave fairly.
    /// </summary>
    internal const int MaxDataFramePayload = 65519 - YamuxHeader.Size;

    private const int ControlReserve = 4096;
    private const int MaxPendingControlFrames = 65536;
    private static readonly TimeSpan GoAwayGrace = TimeSpan.FromSeconds(2);
    private static readonly Action<object?> s_wake = static s => ((TaskCompletionSource)s!).TrySetResult();
    private static readonly Action<object?> s_giveUpSlot = static s => ((TaskCompletionSource<bool>)s!).TrySetResult(false);

    private readonly Stream _connection;
    private readonly bool _isInitiator;
    private readonly YamuxOptions _options;
    private readonly YamuxFrameReader _reader;
    // The session's one lock: opening and closing, the stream table, the accept queue, the control queue
    // and the slots below. Each had an object of its own, held per connection for its whole life; none is held long.
    private readonly object _openLock = new();
    private YamuxStreamTable _streams;
    // Inbound streams not accepted yet; a queue and a signal rather than an unbounded channel, which
    // costs ~1 KiB a session before its first stream (tens of thousands of sessions in a simulation,
    // most of which never see an inbound stream).
    private YamuxInlineQueue<YamuxStream> _accepted;
    // Writers take turns on the connection: one slot.
    private YamuxSlots _writeLock = new(1);
    private YamuxInlineQueue<YamuxHeader> _control;
    // The spec's ACK backlog: at most 256 of our streams may wait for the remote's ACK.
    private YamuxSlots _ackBacklog = new(256);
    private readonly CancellationTokenSource _ioCts = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ITimer? _keepAliveTimer;
    private readonly ITimer? _keepAliveDeadline;
    private Task? _readLoop;
    // Created by the first ping: most sessions (no keep-alive, no window tuning) never send one, and
    // an empty concurrent dictionary is ~1 KiB a session, for tens of thousands of sessions in a simulation.
    private ConcurrentDictionary<uint, (TaskCompletionSource<TimeSpan>? Waiter, long Started)>? _pings;
    private TaskCompletionSource? _acceptSignal;

    /// <summary>
    /// An acceptor's wake-up held by the read loop while it handles the frame after a stream's SYN,
    /// when that frame is here already: a dialer that opens a stream and writes at once sends the SYN
    /// and the first data together, and the acceptor then finds the data in the stream instead of
    /// racing the read loop for it (a multistream listener answers in one write when it does).
    /// </summary>
    private TaskCompletionSource? _heldAcceptSignal;
    private bool _acceptClosed;

    private uint _nextStreamId;
    private int _inboundStreams;
    private int _acceptBacklog;
    private int _controlFlushScheduled;
    private int _closed;
    private YamuxException? _closeError;
    private volatile bool _localGoAway;
    private volatile bool _remoteGoAway;
    private int _nextPingId;
    private long _roundTripTicks;
    private volatile bool _trafficSinceProbe;
    private uint _keepAliveProbe;
    private int _keepAliveProbeOutstanding;
    private long _keepAliveProbeSentAt;
    // Connection writes begun and ended (under the write lock, so one writer), and the one in progress when
    // the current probe was queued (0: none). A remote that stops reading while it still sends, its own pings
    // say, proves itself alive to the keep-alive, while our stalled write holds the write lock, and with it
    // every stream's writes and our probe, for ever; go-yamux bounds the same with ConnectionWriteTimeout.
    private int _writesBegun;
    private int _writesEnded;
    private int _writeInProgressAtProbe;

    public YamuxSession(Stream connection, bool isInitiator, YamuxOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        _options = options ?? new YamuxOptions();
        _options.Validate();
        _connection = connection;
        _isInitiator = isInitiator;
        _nextStreamId = isInitiator ? 1u : 2u;
        _reader = new YamuxFrameReader(connection);
        TimeProvider = _options.TimeProvider;

        if (_options.KeepAliveInterval is { } interval)
        {
            _keepAliveDeadline = TimeProvider.CreateTimer(static s => ((YamuxSession)s!).OnKeepAliveDeadline(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _keepAliveTimer = TimeProvider.CreateTimer(static s => ((YamuxSession)s!).OnKeepAliveTick(), this, interval, interval);
        }

        _readLoop = ReadLoopAsync();

        if (_options.MaxStreamWindowSize > _options.InitialWindowSize)
        {
            // Window auto-tuning needs an RTT estimate before the first window fills up.
            SendPing(waiter: null);
        }
    }

    private ConcurrentDictionary<uint, (TaskCompletionSource<TimeSpan>? Waiter, long Started)> Pings
    {
        get
        {
            var pings = Volatile.Read(ref _pings);
            return pings ?? Interlocked.CompareExchange(ref _pings, new(), null) ?? _pings!;
        }
    }

    /// <summary>Open streams: not yet closed in both directions nor reset.</summary>
    public int StreamCount => _streams.Count;

    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    /// <summary>False once opening a stream would fail: the session closed or either side sent go-away.</summary>
    internal bool CanOpenStreams => !IsClosed && !_remoteGoAway && !_localGoAway;

    /// <summary>Completes when the session ends; faulted with the <see cref="YamuxException"/> on protocol error, keep-alive timeout or connection failure.</summary>
    public Task Completion => _completion.Task;

    internal TimeProvider TimeProvider { get; }

    internal int MaxStreamWindowSize => _options.MaxStreamWindowSize;

    /// <summary>The last measured round trip, in <see cref="TimeProvider.GetTimestamp"/> ticks; 0 while unknown.</summary>
    internal long RoundTripTimestampTicks => Volatile.Read(ref _roundTripTicks);

    public ValueTask<YamuxStream> OpenStreamAsync(CancellationToken cancellationToken) => OpenStreamAsync(synWithFirstWrite: false, cancellationToken);

    /// <summary>
    /// Opens a stream. With <paramref name="synWithFirstWrite"/> the SYN waits for the stream's first
    /// write and travels in the same connection write, saving a write on each side; only for a
    /// caller that writes at once (otherwise the remote learns of the stream with the next frame sent).
    /// </summary>
    public async ValueTask<YamuxStream> OpenStreamAsync(bool synWithFirstWrite, CancellationToken cancellationToken) =>
        await OpenStreamCoreAsync(synWithFirstWrite, quiet: false, cancellationToken) ?? throw ClosedError();

    /// <summary>
    /// As <see cref="OpenStreamAsync(bool, CancellationToken)"/>, but null rather than an exception when the
    /// session is closed or going away: for callers to whom a closing connection is the normal end
    /// (identify on a connection its dialer closes at once).
    /// </summary>
    internal ValueTask<YamuxStream?> TryOpenStreamAsync(bool synWithFirstWrite, CancellationToken cancellationToken) =>
        OpenStreamCoreAsync(synWithFirstWrite, quiet: true, cancellationToken);

    private async ValueTask<YamuxStream?> OpenStreamCoreAsync(bool synWithFirstWrite, bool quiet, CancellationToken cancellationToken)
    {
        if (quiet && !CanOpenStreams)
        {
            return null;
        }

        ThrowIfCannotOpen();

        TaskCompletionSource<bool>? ackWaiter = null;
        lock (_openLock)
        {
            if (!_ackBacklog.TryTake())
            {
                // Close fails the waiters under this lock: none may start waiting after it.
                if (IsClosed)
                {
                    throw ClosedError();
                }

                ackWaiter = _ackBacklog.Enqueue();
            }
        }

        if (ackWaiter is not null && !await WaitForSlotAsync(ackWaiter, cancellationToken))
        {
            cancellationToken.ThrowIfCancellationRequested();
            throw ClosedError();
        }

        YamuxStream stream;
        try
        {
            lock (_openLock)
            {
                if (quiet && !CanOpenStreams)
                {
                    _ackBacklog.Release();
                    return null;
                }

                ThrowIfCannotOpen();
                if (_nextStreamId > uint.MaxValue - 2)
                {
                    throw new YamuxException("stream ids are exhausted on this session");
                }

                stream = new YamuxStream(this, _nextStreamId, _options.InitialWindowSize, holdsAckSlot: true);
                _nextStreamId += 2;
                _streams.Add(stream);
            }
        }
        catch
        {
            lock (_openLock)
            {
                _ackBacklog.Release();
            }

            throw;
        }

        EnqueueControl(new YamuxHeader(YamuxFrameType.WindowUpdate, YamuxFlags.Syn, stream.Id, (uint)(_options.InitialWindowSize - YamuxOptions.DefaultWindowSize)),
            flush: !synWithFirstWrite);
        if (IsClosed)
        {
            stream.OnSessionClosed(ClosedError());
            RemoveStream(stream);
            return quiet ? null : throw ClosedError();
        }

        return stream;
    }

    public ValueTask<YamuxStream> AcceptStreamAsync(CancellationToken cancellationToken) => AcceptStreamAsync(ackWithFirstWrite: false, cancellationToken);

    /// <summary>
    /// Accepts a stream. With <paramref name="ackWithFirstWrite"/> the ACK waits for the stream's
    /// first write (or any other frame this session sends) and shares its connection write; only for
    /// a caller that writes at once, as a multistream-select listener does.
    /// </summary>
    public async ValueTask<YamuxStream> AcceptStreamAsync(bool ackWithFirstWrite, CancellationToken cancellationToken) =>
        await TryAcceptStreamAsync(ackWithFirstWrite, cancellationToken) ?? throw ClosedError();

    /// <summary>
    /// Completes when an inbound stream waits to be accepted or accepting has ended (the session closed
    /// or went away); it never faults and takes no token. Not an async method: the host's accept loop
    /// waits on the signal itself, so an idle connection parks no state machine or cancellation
    /// registration of the session's, and <see cref="TryAcceptStreamAsync"/> then takes the stream
    /// without waiting. The waiter's continuation runs on the thread that wakes it, as with wakeInline.
    /// </summary>
    internal Task WhenStreamToAcceptAsync()
    {
        lock (_openLock)
        {
            if (_accepted.Count > 0 || _acceptClosed)
            {
                return Task.CompletedTask;
            }

            if (_acceptSignal is null || _acceptSignal.Task.IsCompleted)
            {
                _acceptSignal = new TaskCompletionSource(TaskCreationOptions.None);
            }

            return _acceptSignal.Task;
        }
    }

    /// <summary>
    /// <see cref="AcceptStreamAsync(bool, CancellationToken)"/> that returns null once the session has
    /// closed: an accept loop ends with every connection, and an exception per connection (thrown
    /// through each await above it) was a measurable share of a connection's cost.
    /// </summary>
    /// <param name="wakeInline">
    /// The acceptor's continuation runs on the thread that wakes it (the read loop, once the stream's
    /// first frame is buffered) instead of as a thread-pool item of its own. Only for an acceptor that
    /// hands each stream on at once (the host's loop, whose handlers start with a yield): its serving
    /// then costs one hop, not two, and the read loop is held only for the hand-over.
    /// </param>
    internal async ValueTask<YamuxStream?> TryAcceptStreamAsync(bool ackWithFirstWrite, CancellationToken cancellationToken, bool wakeInline = false)
    {
        YamuxStream? stream;
        while (true)
        {
            TaskCompletionSource signal;
            lock (_openLock)
            {
                if (_accepted.TryDequeue(out stream))
                {
                    break;
                }

                if (_acceptClosed)
                {
                    return null;
                }

                if (_acceptSignal is null || _acceptSignal.Task.IsCompleted)
                {
                    _acceptSignal = new TaskCompletionSource(wakeInline ? TaskCreationOptions.None : TaskCreationOptions.RunContinuationsAsynchronously);
                }

                signal = _acceptSignal;
            }

            // A cancelled wait completes the shared signal; other acceptors woken with it wait again.
            cancellationToken.ThrowIfCancellationRequested();
            var registration = cancellationToken.UnsafeRegister(s_wake, signal);
            try
            {
                await signal.Task;
            }
            finally
            {
                registration.Unregister();
            }

            cancellationToken.ThrowIfCancellationRequested();
        }

        Interlocked.Decrement(ref _acceptBacklog);
        if (!stream.IsFullyClosed)
        {
            var grant = stream.PrepareAcceptGrant(_options.InitialWindowSize);
            EnqueueControl(new YamuxHeader(YamuxFrameType.WindowUpdate, YamuxFlags.Ack, stream.Id, grant), flush: !ackWithFirstWrite);
        }

        return stream;
    }

    public async Task<TimeSpan> PingAsync(CancellationToken cancellationToken)
    {
        if (IsClosed)
        {
            throw ClosedError();
        }

        var waiter = new TaskCompletionSource<TimeSpan>(TaskCreationOptions.RunContinuationsAsynchronously);
        var id = SendPing(waiter);
        if (IsClosed)
        {
            Pings.TryRemove(id, out _);
            throw ClosedError();
        }

        try
        {
            return await waiter.Task.WaitOrCancelAsync(cancellationToken);
        }
        finally
        {
            Pings.TryRemove(id, out _);
        }
    }

    /// <summary>Announces a normal go-away: neither side opens new streams, existing ones run to their end.</summary>
    public async Task GoAwayAsync(CancellationToken cancellationToken)
    {
        if (IsClosed)
        {
            throw ClosedError();
        }

        _localGoAway = true;
        await WriteFrameAsync(new YamuxHeader(YamuxFrameType.GoAway, YamuxFlags.None, 0, (uint)YamuxGoAwayCode.Normal), ReadOnlyMemory<byte>.Empty, cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        Close(null, YamuxGoAwayCode.Normal);
        try
        {
            await _completion.Task;
        }
        catch (YamuxException)
        {
            // The session had already failed; Completion reports that to whoever watches it.
        }
    }

    /// <summary>
    /// Writes one frame (plus any queued control frames) in a single connection write. The frame is
    /// assembled in a pooled buffer held only for this write, so an idle session pins no write buffer.
    /// </summary>
    internal ValueTask WriteFrameAsync(YamuxHeader header, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken) =>
        WriteFrameAsync(header, ReadOnlyMemory<byte>.Empty, payload, cancellationToken);

    /// <summary>As the other overload, with <paramref name="prefix"/> written ahead of <paramref name="payload"/> in the same frame (the header counts both).</summary>
    internal ValueTask WriteFrameAsync(YamuxHeader header, ReadOnlyMemory<byte> prefix, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        var write = TryWriteFrameAsync(header, prefix, payload, cancellationToken);
        if (write.IsCompletedSuccessfully)
        {
            return write.Result ? ValueTask.CompletedTask : ValueTask.FromException(ClosedError());
        }

        return ThrowIfClosedAsync(write);
    }

    private async ValueTask ThrowIfClosedAsync(ValueTask<bool> write)
    {
        if (!await write)
        {
            throw ClosedError();
        }
    }

    /// <summary>
    /// As <see cref="WriteFrameAsync(YamuxHeader, ReadOnlyMemory{byte}, ReadOnlyMemory{byte}, CancellationToken)"/>, but false,
    /// not an exception, when the session is closed or closes in this write: the caller decides whether that is an error.
    /// </summary>
    internal async ValueTask<bool> TryWriteFrameAsync(YamuxHeader header, ReadOnlyMemory<byte> prefix, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        await EnterWriteLockAsync(cancellationToken);
        byte[]? buffer = null;
        try
        {
            if (IsClosed)
            {
                return false;
            }

            var controlRoom = PendingControlBytes();
            buffer = ArrayPool<byte>.Shared.Rent(controlRoom + YamuxHeader.Size + prefix.Length + payload.Length);

            // Every control frame queued by now goes first: a SYN queued by OpenStreamAsync must precede
            // the stream's data. Frames queued after the count above have a flush of their own pending.
            var length = DrainControl(buffer.AsSpan(0, controlRoom), out var more);
            while (more && controlRoom == ControlReserve)
            {
                if (!await WriteConnectionAsync(buffer, length)) return false;
                length = DrainControl(buffer.AsSpan(0, controlRoom), out more);
            }

            header.Write(buffer.AsSpan(length));
            length += YamuxHeader.Size;
            prefix.Span.CopyTo(buffer.AsSpan(length));
            length += prefix.Length;
            payload.Span.CopyTo(buffer.AsSpan(length));
            length += payload.Length;
            return await WriteConnectionAsync(buffer, length);
        }
        finally
        {
            ReleaseWriteLock();
            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    /// <summary>
    /// Queues a header-only frame; never blocks, so the read loop and timers may call it. Without
    /// <paramref name="flush"/> the frame leaves with the next write on this session instead of one of its own.
    /// </summary>
    /// <param name="soon">The flush waits until the work running now yielded, so a write it makes meanwhile carries the frame.</param>
    internal void EnqueueControl(YamuxHeader header, bool flush = true, bool soon = false)
    {
        if (IsClosed)
        {
            return;
        }

        bool overflow;
        lock (_openLock)
        {
            overflow = _control.Count >= MaxPendingControlFrames;
            if (!overflow)
            {
                _control.Enqueue(header);
            }
        }

        if (overflow)
        {
            Close(new YamuxException("the remote does not read the control frames it provokes"), YamuxGoAwayCode.ProtocolError);
            return;
        }

        if (flush && Interlocked.Exchange(ref _controlFlushScheduled, 1) == 0)
        {
            _ = soon ? FlushControlSoonAsync() : FlushControlAsync();
        }
    }

    internal void RemoveStream(YamuxStream stream)
    {
        bool removed;
        lock (_openLock)
        {
            removed = _streams.Remove(stream);
        }

        if (removed && IsRemoteInitiated(stream.Id))
        {
            Interlocked.Decrement(ref _inboundStreams);
        }

        if (stream.ReleaseAckSlot())
        {
            ReleaseAckSlot();
        }
    }

    private void ReleaseAckSlot()
    {
        lock (_openLock)
        {
            _ackBacklog.Release();
        }
    }

    /// <summary>
    /// Enters the write lock, as <see cref="ContextAwaits.EnterAsync"/> entered a semaphore: at once when it
    /// is free (no allocation), else in turn; a cancelled wait gives up its turn.
    /// </summary>
    /// <exception cref="OperationCanceledException">The token was cancelled before the lock was entered.</exception>
    private ValueTask EnterWriteLockAsync(CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        TaskCompletionSource<bool> waiter;
        lock (_openLock)
        {
            if (_writeLock.TryTake())
            {
                return ValueTask.CompletedTask;
            }

            waiter = _writeLock.Enqueue();
        }

        return WaitForWriteLockAsync(waiter, cancellationToken);
    }

    private async ValueTask WaitForWriteLockAsync(TaskCompletionSource<bool> waiter, CancellationToken cancellationToken)
    {
        if (!await WaitForSlotAsync(waiter, cancellationToken))
        {
            throw new OperationCanceledException(cancellationToken);
        }
    }

    private void ReleaseWriteLock()
    {
        lock (_openLock)
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// True once <paramref name="waiter"/> holds its slot; false when it gave up first, because the token
    /// was cancelled (a later release then skips it) or the session failed it. A slot granted as the
    /// token fires is kept: the caller goes on as if the token had not fired.
    /// </summary>
    private static async ValueTask<bool> WaitForSlotAsync(TaskCompletionSource<bool> waiter, CancellationToken cancellationToken)
    {
        if (!cancellationToken.CanBeCanceled)
        {
            return await waiter.Task;
        }

        var registration = cancellationToken.UnsafeRegister(s_giveUpSlot, waiter);
        try
        {
            return await waiter.Task;
        }
        finally
        {
            registration.Unregister();
        }
    }

    private async Task FlushControlSoonAsync()
    {
        await Task.Yield();
        await FlushControlAsync();
    }

    private async Task FlushControlAsync()
    {
        try
        {
            await EnterWriteLockAsync(_ioCts.Token);
            try
            {
                // Cleared under the lock before draining: whatever is queued after this point schedules its own flush.
                Volatile.Write(ref _controlFlushScheduled, 0);
                // What is queued now, in passes of at most the reserve; a frame queued while we write
                // waits for the write it was queued for (a SYN for its stream's first data) or its own flush.
                var more = true;
                while (more && !IsClosed)
                {
                    var room = PendingControlBytes();
                    if (room == 0)
                    {
                        break;
                    }

                    var buffer = ArrayPool<byte>.Shared.Rent(room);
                    try
                    {
                        var length = DrainControl(buffer.AsSpan(0, room), out more);
                        more &= room == ControlReserve;
                        // A failed write closed the session; nobody waits for a control frame, so nothing is thrown.
                        if (!await WriteConnectionAsync(buffer, length)) break;
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                    }
                }
            }
            finally
            {
                ReleaseWriteLock();
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or YamuxException or ObjectDisposedException)
        {
            // The session is closing; Close already recorded why.
        }
    }

    /// <summary>Room for the control frames queued now, at most <see cref="ControlReserve"/>; more queued later are drained by the next pass.</summary>
    private int PendingControlBytes()
    {
        lock (_openLock)
        {
            return Math.Min(_control.Count * YamuxHeader.Size, ControlReserve);
        }
    }

    private int DrainControl(Span<byte> destination, out bool more)
    {
        var length = 0;
        lock (_openLock)
        {
            while (destination.Length - length >= YamuxHeader.Size && _control.TryDequeue(out var header))
            {
                header.Write(destination[length..]);
                length += YamuxHeader.Size;
            }

            more = _control.Count > 0;
        }

        return length;
    }

    /// <summary>
    /// Caller holds the write lock. A failed write ends the session: the frame boundary is lost.
    /// False then, rather than an exception, so that a control flush into a connection the remote
    /// already closed (a ping answer after a dial-and-close) costs no throw; a stream's write throws once.
    /// </summary>
    private async ValueTask<bool> WriteConnectionAsync(byte[] buffer, int length)
    {
        Volatile.Write(ref _writesBegun, _writesBegun + 1);
        try
        {
            await _connection.WriteAsync(buffer.AsMemory(0, length), _ioCts.Token);
            await _connection.FlushAsync(_ioCts.Token);
            return true;
        }
        catch (Exception ex)
        {
            // Whatever the connection threw, the frame boundary is lost: the session cannot go on.
            Close(new YamuxException("writing to the connection failed", ex), null);
            return false;
        }
        finally
        {
            Volatile.Write(ref _writesEnded, _writesEnded + 1);
        }
    }

    private async Task ReadLoopAsync()
    {
        // Leaves the constructor at once, as Task.Run did, but on the caller's context if it has one (a simulation's).
        await Task.Yield();
        TaskCompletionSource? held = null;
        try
        {
            // Stops without another read once closed locally: a read of the disposed connection only throws.
            // The token is taken from its source at each use rather than kept: this state machine is parked
            // per open session, and so is each field of it.
            while (!_ioCts.IsCancellationRequested)
            {
                held = _heldAcceptSignal;
                _heldAcceptSignal = null;
                if (held is not null && !_reader.NextFrameBuffered)
                {
                    held.TrySetResult();
                    held = null;
                }

                await _reader.WaitForBytesAsync(_ioCts.Token);
                if (await _reader.ReadHeaderAsync(_ioCts.Token) == 0)
                {
                    Close(null, null);
                    return;
                }

                var header = _reader.Header;
                _trafficSinceProbe = true;
                if (header.Version != 0)
                {
                    throw new YamuxException($"unsupported frame version {header.Version}");
                }

                switch (header.Type)
                {
                    case YamuxFrameType.Data:
                    case YamuxFrameType.WindowUpdate:
                        await OnStreamFrameAsync(header, _ioCts.Token);
                        break;
                    case YamuxFrameType.Ping:
                        OnPing(header);
                        break;
                    case YamuxFrameType.GoAway:
                        OnGoAway(header);
                        break;
                    default:
                        throw new YamuxException($"unknown frame type {(byte)header.Type}");
                }

                held?.TrySetResult();
                held = null;
            }
        }
        catch (YamuxException ex)
        {
            Close(ex, YamuxGoAwayCode.ProtocolError);
        }
        catch (Exception ex) when (IsClosed && ex is OperationCanceledException or ObjectDisposedException or IOException or InvalidOperationException)
        {
            // Closed locally while reading.
        }
        catch (Exception ex)
        {
            Close(new YamuxException("reading from the connection failed", ex), null);
        }
        finally
        {
            held?.TrySetResult();
            _heldAcceptSignal?.TrySetResult();
            _heldAcceptSignal = null;
            _reader.Release();
        }
    }

    private async ValueTask OnStreamFrameAsync(YamuxHeader header, CancellationToken token)
    {
        var isData = header.Type == YamuxFrameType.Data;
        var flags = header.Flags;
        if (header.StreamId == 0)
        {
            throw new YamuxException($"{header.Type} frame on stream id 0, which is reserved for the session");
        }

        YamuxStream? stream;
        if ((flags & YamuxFlags.Syn) != 0)
        {
            stream = OnRemoteOpen(header.StreamId);
        }
        else
        {
            lock (_openLock)
            {
                stream = _streams.Find(header.StreamId);
            }
        }

        if (stream is null)
        {
            // A stream we reset, rejected or already closed: late frames are expected and dropped.
            if (isData && header.Length > 0)
            {
                if (header.Length > (uint)_options.MaxStreamWindowSize)
                {
                    throw new YamuxException($"data frame of {header.Length} bytes for stream {header.StreamId} exceeds any window this session grants");
                }

                await _reader.SkipAsync(header.Length, token);
            }

            return;
        }

        if ((flags & YamuxFlags.Ack) != 0 && stream.ReleaseAckSlot())
        {
            ReleaseAckSlot();
        }

        if (isData)
        {
            if (header.Length > 0)
            {
                if (!stream.FitsReceiveWindow(header.Length))
                {
                    throw new YamuxException($"data frame of {header.Length} bytes on stream {header.StreamId} exceeds the receive window granted");
                }

                var length = (int)header.Length;
                if (length < _reader.SmallPayloadLimit)
                {
                    // Copied from the read-ahead buffer into the stream's shared arrays: an array rented
                    // per frame would make each byte of a peer's 1-byte frames cost ~50 bytes of heap.
                    stream.OnData((await _reader.ReadSmallPayloadAsync(length, token)).Span);
                }
                else
                {
                    // A large payload bypasses the read-ahead buffer into an array of its own, which the
                    // stream keeps as it is: no second copy.
                    var segment = ArrayPool<byte>.Shared.Rent(length);
                    try
                    {
                        await _reader.ReadPayloadAsync(segment.AsMemory(0, length), token);
                    }
                    catch
                    {
                        ArrayPool<byte>.Shared.Return(segment);
                        throw;
                    }

                    stream.OnData(segment, length);
                }
            }
        }
        else
        {
            stream.OnWindowUpdate(header.Length);
        }

        if ((flags & YamuxFlags.Rst) != 0)
        {
            stream.OnRemoteReset();
        }
        else if ((flags & YamuxFlags.Fin) != 0)
        {
            stream.OnRemoteFin();
        }
    }

    /// <summary>A SYN: the new stream, or null when it was refused with RST (limits, go-away).</summary>
    private YamuxStream? OnRemoteOpen(uint id)
    {
        if (!IsRemoteInitiated(id))
        {
            throw new YamuxException($"remote opened stream {id}, an id of the wrong parity for its role");
        }

        bool open;
        lock (_openLock)
        {
            open = _streams.Contains(id);
        }

        if (open)
        {
            throw new YamuxException($"remote opened stream {id} again while it is open");
        }

        if (_localGoAway || IsClosed
            || Volatile.Read(ref _inboundStreams) >= _options.MaxInboundStreams
            || Volatile.Read(ref _acceptBacklog) >= _options.MaxAcceptBacklog)
        {
            EnqueueControl(new YamuxHeader(YamuxFrameType.WindowUpdate, YamuxFlags.Rst, id, 0));
            return null;
        }

        // Until our ACK grants more, the remote may only assume the spec's default window.
        var stream = new YamuxStream(this, id, YamuxOptions.DefaultWindowSize, holdsAckSlot: false);
        lock (_openLock)
        {
            _streams.Add(stream);
        }

        Interlocked.Increment(ref _inboundStreams);
        Interlocked.Increment(ref _acceptBacklog);
        TaskCompletionSource? waiting;
        lock (_openLock)
        {
            if (!_acceptClosed)
            {
                _accepted.Enqueue(stream);
            }

            waiting = _acceptSignal;
            _acceptSignal = null;
        }

        if (waiting is not null)
        {
            // Only the read loop opens streams, so the held signal is its own: at most one is held, for one frame.
            _heldAcceptSignal?.TrySetResult();
            _heldAcceptSignal = waiting;
        }

        return stream;
    }

    private bool IsRemoteInitiated(uint id) => (id & 1) == (_isInitiator ? 0u : 1u);

    private void OnPing(YamuxHeader header)
    {
        if ((header.Flags & YamuxFlags.Syn) != 0)
        {
            EnqueueControl(new YamuxHeader(YamuxFrameType.Ping, YamuxFlags.Ack, 0, header.Length));
            return;
        }

        if ((header.Flags & YamuxFlags.Ack) != 0 && _pings is { } pings && pings.TryRemove(header.Length, out var ping))
        {
            var rtt = TimeProvider.GetTimestamp() - ping.Started;
            Volatile.Write(ref _roundTripTicks, Math.Max(rtt, 1));
            if (header.Length == Volatile.Read(ref _keepAliveProbe))
            {
                Volatile.Write(ref _keepAliveProbeOutstanding, 0);
            }

            ping.Waiter?.TrySetResult(TimeProvider.GetElapsedTime(ping.Started));
        }
    }

    private void OnGoAway(YamuxHeader header)
    {
        _remoteGoAway = true;
        if (header.Length != (uint)YamuxGoAwayCode.Normal)
        {
            var code = Enum.IsDefined(typeof(YamuxGoAwayCode), header.Length) ? ((YamuxGoAwayCode)header.Length).ToString() : header.Length.ToString(System.Globalization.CultureInfo.InvariantCulture);
            Close(new YamuxException($"remote went away with error code {code}"), null);
        }
    }

    private uint SendPing(TaskCompletionSource<TimeSpan>? waiter)
    {
        var id = (uint)Interlocked.Increment(ref _nextPingId);
        Pings[id] = (waiter, TimeProvider.GetTimestamp());
        EnqueueControl(new YamuxHeader(YamuxFrameType.Ping, YamuxFlags.Syn, 0, id));
        return id;
    }

    private void OnKeepAliveTick()
    {
        if (IsClosed || Volatile.Read(ref _keepAliveProbeOutstanding) == 1)
        {
            return;
        }

        // The send time before the flag: a deadline that sees this probe outstanding sees when it left.
        Volatile.Write(ref _keepAliveProbeSentAt, TimeProvider.GetTimestamp());
        Volatile.Write(ref _keepAliveProbeOutstanding, 1);
        _trafficSinceProbe = false;
        var begun = Volatile.Read(ref _writesBegun);
        Volatile.Write(ref _writeInProgressAtProbe, begun != Volatile.Read(ref _writesEnded) ? begun : 0);
        Volatile.Write(ref _keepAliveProbe, (uint)Interlocked.Increment(ref _nextPingId));
        Pings[_keepAliveProbe] = (null, TimeProvider.GetTimestamp());
        EnqueueControl(new YamuxHeader(YamuxFrameType.Ping, YamuxFlags.Syn, 0, _keepAliveProbe));
        _keepAliveDeadline?.Change(_options.KeepAliveTimeout, Timeout.InfiniteTimeSpan);
    }

    private void OnKeepAliveDeadline()
    {
        if (IsClosed || Volatile.Read(ref _keepAliveProbeOutstanding) == 0)
        {
            return;
        }

        // With the interval equal to the timeout (the defaults), the deadline of one probe and the tick that
        // sends the next fall due together; on the thread pool the tick may run first, and this callback then
        // belongs to the probe already answered. Only the current probe's own timeout closes the session.
        var left = _options.KeepAliveTimeout - TimeProvider.GetElapsedTime(Volatile.Read(ref _keepAliveProbeSentAt));
        if (left > TimeSpan.Zero)
        {
            _keepAliveDeadline?.Change(left, Timeout.InfiniteTimeSpan);
            return;
        }

        if (Volatile.Read(ref _writeInProgressAtProbe) is var stalled and > 0 && Volatile.Read(ref _writesEnded) < stalled)
        {
            Close(new YamuxException($"the remote stopped reading: a write to the connection made no progress for {_options.KeepAliveTimeout}"), null);
            return;
        }

        if (_trafficSinceProbe)
        {
            // The peer is talking, only slow to answer this ping: alive.
            Pings.TryRemove(_keepAliveProbe, out _);
            Volatile.Write(ref _keepAliveProbeOutstanding, 0);
            return;
        }

        Close(new YamuxException($"keep-alive timeout: no answer from the remote within {_options.KeepAliveTimeout}"), null);
    }

    private void ThrowIfCannotOpen()
    {
        if (IsClosed)
        {
            throw ClosedError();
        }

        if (_remoteGoAway)
        {
            throw new YamuxException("the remote sent go-away: no new streams on this session");
        }

        if (_localGoAway)
        {
            throw new YamuxException("this session sent go-away: no new streams on it");
        }
    }

    internal YamuxException ClosedError() =>
        _closeError is { } error
            ? new YamuxException($"the session is closed: {error.Message}", error)
            : new YamuxException("the session is closed");

    /// <summary>Ends the session once: fails everything waiting on it, then sends go-away and closes the connection in the background.</summary>
    private void Close(YamuxException? error, YamuxGoAwayCode? goAway)
    {
        lock (_openLock)
        {
            if (_closed != 0)
            {
                return;
            }

            _closeError = error;
            Volatile.Write(ref _closed, 1);
            // Openers waiting for the remote's ACKs give up: they find the session closed.
            _ackBacklog.FailAll();
        }

        _keepAliveTimer?.Dispose();
        _keepAliveDeadline?.Dispose();
        TaskCompletionSource? waiting;
        lock (_openLock)
        {
            _acceptClosed = true;
            waiting = _acceptSignal;
            _acceptSignal = null;
        }

        waiting?.TrySetResult();

        var reason = error ?? new YamuxException("the session was closed");
        YamuxStream[] open;
        lock (_openLock)
        {
            open = _streams.Snapshot();
        }

        foreach (var stream in open)
        {
            stream.OnSessionClosed(reason);
        }

        lock (_openLock)
        {
            _streams.Clear();
        }

        if (_pings is { } pending)
        {
            foreach (var ping in pending.Values)
            {
                ping.Waiter?.TrySetException(ClosedError());
            }

            pending.Clear();
        }
        _ = ShutdownAsync(goAway);
    }

    private async Task ShutdownAsync(YamuxGoAwayCode? goAway)
    {
        try
        {
            await SendFinalGoAwayAndDisconnectAsync(goAway);
        }
        finally
        {
            if (_closeError is { } error)
            {
                _completion.TrySetException(error);
            }
            else
            {
                _completion.TrySetResult();
            }
        }
    }

    private async Task SendFinalGoAwayAndDisconnectAsync(YamuxGoAwayCode? goAway)
    {
        try
        {
            if (goAway is { } code)
            {
                using var grace = new CancellationTokenSource(GoAwayGrace, TimeProvider);
                await EnterWriteLockAsync(grace.Token);
                var buffer = ArrayPool<byte>.Shared.Rent(ControlReserve + YamuxHeader.Size);
                try
                {
                    var length = DrainControl(buffer.AsSpan(0, ControlReserve), out _);
                    new YamuxHeader(YamuxFrameType.GoAway, YamuxFlags.None, 0, (uint)code).Write(buffer.AsSpan(length));
                    length += YamuxHeader.Size;
                    await _connection.WriteAsync(buffer.AsMemory(0, length), grace.Token);
                    await _connection.FlushAsync(grace.Token);
                }
                finally
                {
                    ReleaseWriteLock();
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            // Best effort: the remote learns of the end from the closed connection instead.
        }

        // An orderly release where the connection has one (TCP, in memory): our end of stream makes the
        // remote close too, and the read loop, which drops what still arrives, ends at its end of stream.
        // Cancelling the read instead throws through every layer above the socket, and closing with the
        // remote's bytes unread resets the connection under the remote's writes. Bounded, for a remote
        // that never closes.
        if (_connection is IShutdownStream shutdown && Volatile.Read(ref _readLoop) is { IsCompleted: false } reading)
        {
            using var grace = new CancellationTokenSource(GoAwayGrace, TimeProvider);
            if (shutdown.TryShutdownWrites())
            {
                using (grace.Token.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), _ioCts))
                    await reading;
            }
        }
        _ioCts.Cancel();
        try
        {
            await _connection.DisposeAsync();
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException)
        {
            // Already broken; nothing more to release.
        }

        if (Volatile.Read(ref _readLoop) is { } readLoop)
        {
            // Never faults: the loop turns every failure into a Close.
            await readLoop;
        }
    }
}
