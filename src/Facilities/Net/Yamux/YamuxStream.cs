using System.Buffers;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Yamux;

/// <summary>
/// One logical yamux stream: a duplex <see cref="Stream"/> with its own flow-control windows.
/// One reader and one writer may use it concurrently; concurrent reads (or writes) are not supported,
/// as for any <see cref="Stream"/>.
/// </summary>
public sealed class YamuxStream : Stream
{
    private readonly YamuxSession _session;
    private readonly object _lock = new();
    /// <summary>
    /// Size of the pooled arrays that small payloads are copied into. The window counts bytes, but a
    /// peer picks the frame sizes: small frames share arrays, so unread data holds at most about three
    /// times its size plus one chunk, whatever the frames' sizes (the worst case is one byte alone in a
    /// chunk between two large frames of exactly 2 KiB), where an array per frame cost ~50 times.
    /// </summary>
    private const int ChunkSize = 4096;

    // Unread bytes, pooled arrays in order: the sealed ones with their lengths, then the tail, which
    // small payloads are appended to while it has room. _headOffset is where reading resumes in the
    // first of them (the tail when nothing is sealed). The sealed queue is made when first needed:
    // most streams (a request and its answer) never hold more than the tail.
    private Queue<(byte[] Segment, int Length)>? _sealed;
    private byte[]? _tail;
    private int _tailLength;
    private int _headOffset;
    private int _buffered;
    private TaskCompletionSource? _readWaiter;
    private TaskCompletionSource? _sendWaiter;
    private Action<object?>? _inboundWatch;
    private object? _inboundWatchState;

    /// <summary>Wakes a waiting reader when its token fires; the reader then throws for its token.</summary>
    private static readonly Action<object?> s_cancelRead = static s =>
    {
        var stream = (YamuxStream)s!;
        lock (stream._lock)
        {
            stream.WakeReader();
        }
    };

    // Receive side: credit the remote may still use, the current window size (grows when tuned), and
    // bytes the application consumed that were not yet given back in a WindowUpdate.
    private long _receiveCredit;
    private int _receiveWindowSize;
    private int _consumedUngranted;
    private long _windowEpoch;

    private long _sendWindow = YamuxOptions.DefaultWindowSize;
    private bool _localFin;
    private bool _remoteFin;
    private bool _disposed;
    private YamuxStreamResetException? _resetError;
    // The session ended after the remote's FIN: _resetError fails writes, while reads still return
    // what the remote sent, then end of stream (OnSessionClosed).
    private bool _drainAfterClose;
    private int _holdsAckSlot;

    // Bytes that lead the next data frame (HoldForFirstWrite), the timer that sends them alone if no
    // write comes in time, and a send of them alone in flight, which later frames must not overtake.
    private byte[]? _held;
    private int _heldLength;
    private ITimer? _heldTimer;
    private TaskCompletionSource? _heldSending;

    private static readonly TimerCallback s_heldExpired = static s => _ = ((YamuxStream)s!).FlushHeldQuietlyAsync();

    internal YamuxStream(YamuxSession session, uint id, int receiveWindow, bool holdsAckSlot)
    {
        _session = session;
        Id = id;
        _receiveCredit = receiveWindow;
        _receiveWindowSize = receiveWindow;
        _holdsAckSlot = holdsAckSlot ? 1 : 0;
        _windowEpoch = session.TimeProvider.GetTimestamp();
    }

    public uint Id { get; }

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    /// <summary>Whether the connection this stream belongs to has closed.</summary>
    internal bool IsSessionClosed => _session.IsClosed;

    internal bool IsFullyClosed
    {
        get
        {
            lock (_lock)
            {
                return _resetError is not null || (_localFin && _remoteFin);
            }
        }
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return TryRead(buffer.Span, out var read, out var wait)
            ? new ValueTask<int>(read)
            : ReadSlowAsync(buffer, wait!, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        while (true)
        {
            if (TryRead(buffer, out var read, out var wait))
            {
                return read;
            }

            if (Volatile.Read(ref _held) is not null)
            {
                FlushHeldAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
            }

            wait!.GetAwaiter().GetResult();
        }
    }

    /// <summary>True when a read would return bytes at once, without waiting for the remote.</summary>
    public bool DataAvailable
    {
        get
        {
            lock (_lock)
            {
                return _buffered > 0;
            }
        }
    }

    /// <summary>Bytes a read would return at once, without waiting for the remote.</summary>
    internal int BufferedCount
    {
        get
        {
            lock (_lock)
            {
                return _buffered;
            }
        }
    }

    /// <summary>
    /// Pooled arrays holding this stream's unread bytes, and their total size: what the buffered data
    /// costs in memory, as opposed to <see cref="BufferedCount"/>, what the window counts.
    /// </summary>
    internal (int Count, long Bytes) HeldSegments
    {
        get
        {
            lock (_lock)
            {
                long bytes = _tail?.Length ?? 0;
                var count = _tail is null ? 0 : 1;
                if (_sealed is { } sealedSegments)
                {
                    foreach (var (segment, _) in sealedSegments)
                    {
                        bytes += segment.Length;
                    }

                    count += sealedSegments.Count;
                }

                return (count, bytes);
            }
        }
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
        ThrowIfUnwritten(WriteAsync(buffer, complete: false, quiet: false, cancellationToken));

    /// <summary>
    /// Writes as <see cref="WriteAsync(ReadOnlyMemory{byte}, CancellationToken)"/> does, but false rather than an
    /// exception when the stream or its session has ended: for a caller to whom a connection closing
    /// at once is a normal end (identify's proposal on a connection its dialer has just closed).
    /// </summary>
    internal ValueTask<bool> TryWriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken) =>
        WriteAsync(buffer, complete: false, quiet: true, cancellationToken);

    /// <summary>A write that was not quiet throws rather than report false: only its completion is left to pass on.</summary>
    private static ValueTask ThrowIfUnwritten(ValueTask<bool> write) =>
        write.IsCompletedSuccessfully ? ValueTask.CompletedTask : new ValueTask(write.AsTask());

    /// <summary>
    /// Writes <paramref name="buffer"/> and half-closes: the FIN rides on the last data frame, so an
    /// answer and its end reach the remote in one frame instead of two.
    /// </summary>
    public ValueTask WriteAndCompleteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
        buffer.IsEmpty ? CompleteWritesAsync(cancellationToken) : ThrowIfUnwritten(WriteAsync(buffer, complete: true, quiet: false, cancellationToken));

    /// <summary>
    /// Holds <paramref name="prefix"/> to lead this stream's next data frame (or its FIN), so a
    /// listener's negotiation answer leaves with the handler's first answer in one frame. It leaves
    /// alone when a read has to wait for the remote first (the remote may be waiting for it), or after
    /// <paramref name="maxHold"/>; a reset drops it. For a stream nothing was written on yet: its send
    /// window is the initial one, far larger than a negotiation message, so the prefix always fits.
    /// Returns false, holding nothing, when the stream cannot write any more or holds bytes already.
    /// </summary>
    internal bool HoldForFirstWrite(ReadOnlySpan<byte> prefix, TimeSpan maxHold)
    {
        if (prefix.IsEmpty)
        {
            return false;
        }

        var held = ArrayPool<byte>.Shared.Rent(prefix.Length);
        prefix.CopyTo(held);
        lock (_lock)
        {
            if (_disposed || _resetError is not null || _localFin || _held is not null || _heldSending is not null)
            {
                ArrayPool<byte>.Shared.Return(held);
                return false;
            }

            _held = held;
            _heldLength = prefix.Length;
            if (maxHold != Timeout.InfiniteTimeSpan)
            {
                _heldTimer = _session.TimeProvider.CreateTimer(s_heldExpired, this, maxHold, Timeout.InfiniteTimeSpan);
            }
        }

        return true;
    }

    /// <summary>Caller holds the lock: takes the held bytes (null when none) and stops their timer.</summary>
    private byte[]? TakeHeld(out int length)
    {
        var held = _held;
        length = _heldLength;
        _held = null;
        _heldLength = 0;
        _heldTimer?.Dispose();
        _heldTimer = null;
        return held;
    }

    /// <summary>Caller holds the lock: drops the held bytes, nobody will read them.</summary>
    private void DropHeld()
    {
        if (TakeHeld(out _) is { } held)
        {
            ArrayPool<byte>.Shared.Return(held);
        }
    }

    /// <summary>
    /// Undoes a data frame whose write was cancelled: the session only gives up before the frame is
    /// written, so its credit (and FIN) are still ours, and its held bytes are held again when the stream
    /// can still send them. Returns the held buffer when it was not taken back (the caller returns it to the pool).
    /// </summary>
    private byte[]? GiveBackCancelledSend(int credit, byte[]? held, int heldLength, bool finSent)
    {
        lock (_lock)
        {
            _sendWindow += credit;
            if (finSent)
            {
                _localFin = false;
            }

            if (held is null || _held is not null || _localFin || _disposed || _resetError is not null)
            {
                return held;
            }

            _held = held;
            _heldLength = heldLength;
            return null;
        }
    }

    /// <summary>Sends the held bytes in a data frame of their own, unless a write took them first.</summary>
    private async ValueTask FlushHeldAsync(CancellationToken cancellationToken)
    {
        byte[]? held;
        int length;
        TaskCompletionSource sending;
        lock (_lock)
        {
            if (_held is null || _disposed || _resetError is not null)
            {
                return;
            }

            held = TakeHeld(out length);
            _sendWindow -= length;
            sending = _heldSending = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        try
        {
            await _session.WriteFrameAsync(new YamuxHeader(YamuxFrameType.Data, YamuxFlags.None, Id, (uint)length), held.AsMemory(0, length), cancellationToken);
        }
        catch (OperationCanceledException)
        {
            held = GiveBackCancelledSend(length, held, length, finSent: false);
            throw;
        }
        catch (YamuxException ex) when (ex is not YamuxStreamResetException)
        {
            throw SessionFailure(ex);
        }
        finally
        {
            if (held is not null)
            {
                ArrayPool<byte>.Shared.Return(held);
            }

            lock (_lock)
            {
                _heldSending = null;
            }

            sending.TrySetResult();
        }
    }

    private async Task FlushHeldQuietlyAsync()
    {
        try
        {
            await FlushHeldAsync(CancellationToken.None);
        }
        catch (Exception e) when (e is YamuxException or ObjectDisposedException)
        {
            // The stream or its session ended: whoever uses it learns so from its own read or write.
        }
    }

    /// <param name="quiet">False instead of an exception when the stream was reset or its session ended; true when written.</param>
    private async ValueTask<bool> WriteAsync(ReadOnlyMemory<byte> buffer, bool complete, bool quiet, CancellationToken cancellationToken)
    {
        while (true)
        {
            int chunk;
            var last = false;
            Task? wait = null;
            byte[]? held = null;
            var heldLength = 0;
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (quiet && _resetError is not null)
                {
                    return false;
                }

                ThrowIfReset();
                if (_localFin)
                {
                    throw new InvalidOperationException($"Writes were completed on yamux stream {Id}.");
                }

                var holding = _held is null ? 0 : _heldLength;
                if (_heldSending is { } sending)
                {
                    // The held bytes are on their way alone: this frame must follow them.
                    chunk = 0;
                    wait = sending.Task;
                }
                else if (buffer.IsEmpty && holding == 0)
                {
                    if (!complete)
                    {
                        return true;
                    }

                    chunk = -1;
                }
                else if (_sendWindow - holding > 0 || (buffer.IsEmpty && _sendWindow >= holding))
                {
                    chunk = (int)Math.Max(0, Math.Min(Math.Min(buffer.Length, _sendWindow - holding), YamuxSession.MaxDataFramePayload - holding));
                    _sendWindow -= chunk + holding;
                    held = TakeHeld(out heldLength);
                    last = complete && chunk == buffer.Length;
                    if (last)
                    {
                        _localFin = true;
                    }
                }
                else
                {
                    chunk = 0;
                    wait = (_sendWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
                }
            }

            if (chunk < 0)
            {
                // Only the FIN is left: the held bytes it was to carry left alone meanwhile.
                await CompleteWritesAsync(cancellationToken);
                return true;
            }

            if (wait is not null)
            {
                await wait.WaitOrCancelAsync(cancellationToken);
                continue;
            }

            try
            {
                if (!await _session.TryWriteFrameAsync(new YamuxHeader(YamuxFrameType.Data, last ? YamuxFlags.Fin : YamuxFlags.None, Id, (uint)(heldLength + chunk)),
                    held.AsMemory(0, heldLength), buffer[..chunk], cancellationToken))
                {
                    // The session closed before or during this write; it has ended this stream too.
                    return quiet ? false : throw SessionFailure(_session.ClosedError());
                }
            }
            catch (OperationCanceledException)
            {
                held = GiveBackCancelledSend(chunk + heldLength, held, heldLength, finSent: last);
                throw;
            }
            catch (YamuxException ex) when (ex is not YamuxStreamResetException)
            {
                throw SessionFailure(ex);
            }
            finally
            {
                if (held is not null)
                {
                    ArrayPool<byte>.Shared.Return(held);
                }
            }

            buffer = buffer[chunk..];
            if (last)
            {
                RemoveIfClosed();
                return true;
            }

            // Every byte has left: a reset that arrived while this frame was being written answers what
            // was sent, and is the next read's to report. Going round again would throw it from a write that succeeded.
            if (buffer.IsEmpty && !complete)
            {
                lock (_lock)
                {
                    if (_held is null && _heldSending is null)
                    {
                        return true;
                    }
                }
            }
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) =>
        WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    /// <summary>Half-close: sends FIN. The remote reads end of stream once it drained what was sent; reading here goes on.</summary>
    public async ValueTask CompleteWritesAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Task? wait = null;
            var carry = false;
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                ThrowIfReset();
                if (_localFin)
                {
                    return;
                }

                if (_heldSending is { } sending)
                {
                    wait = sending.Task;
                }
                else if (_held is not null)
                {
                    carry = true;
                }
                else
                {
                    _localFin = true;
                }
            }

            if (carry)
            {
                // The held bytes and the FIN travel in one data frame.
                await WriteAsync(ReadOnlyMemory<byte>.Empty, complete: true, quiet: false, cancellationToken);
                return;
            }

            if (wait is null)
            {
                break;
            }

            await wait.WaitOrCancelAsync(cancellationToken);
        }

        try
        {
            await _session.WriteFrameAsync(new YamuxHeader(YamuxFrameType.WindowUpdate, YamuxFlags.Fin, Id, 0), ReadOnlyMemory<byte>.Empty, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            lock (_lock)
            {
                _localFin = false;
            }

            throw;
        }
        catch (YamuxException ex) when (ex is not YamuxStreamResetException)
        {
            throw SessionFailure(ex);
        }

        RemoveIfClosed();
    }

    /// <summary>Sends RST; from then on local reads and writes throw <see cref="YamuxStreamResetException"/>.</summary>
    public void Reset()
    {
        (Action<object?>, object?)? watch;
        lock (_lock)
        {
            if (_drainAfterClose)
            {
                // The session is gone, so there is no RST to send: only what it left readable to drop.
                _drainAfterClose = false;
                _resetError = new YamuxStreamResetException($"yamux stream {Id} was reset locally");
                DropSegments();
                return;
            }

            if (_resetError is not null || (_localFin && _remoteFin))
            {
                return;
            }

            _resetError = new YamuxStreamResetException($"yamux stream {Id} was reset locally");
            DropHeld();
            DropSegments();
            WakeAll();
            watch = TakeInboundWatch();
        }

        _session.EnqueueControl(new YamuxHeader(YamuxFrameType.WindowUpdate, YamuxFlags.Rst, Id, 0));
        _session.RemoveStream(this);
        Notify(watch);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            var sendFin = false;
            var remoteDone = false;
            uint grant = 0;
            (Action<object?>, object?)? watch;
            byte[]? held = null;
            var heldLength = 0;
            Task? heldSending = null;
            lock (_lock)
            {
                if (_disposed)
                {
                    return;
                }

                _disposed = true;
                remoteDone = _remoteFin;
                var freed = DropSegments();
                if (_resetError is null)
                {
                    sendFin = !_localFin;
                    _localFin = true;
                    if (sendFin)
                    {
                        // The FIN must not overtake held bytes: it rides with them, or follows their send in flight.
                        held = TakeHeld(out heldLength);
                        _sendWindow -= heldLength;
                        heldSending = _heldSending?.Task;
                    }

                    // Keep the remote's writes flowing after we stopped reading: what it still sends is
                    // dropped and granted back as it arrives (OnData). Credit is given back here only
                    // when the remote holds less than half the window, as a reading stream does: a
                    // request-response server would otherwise send a window update after every call.
                    grant = TakeGrant(freed, eager: false);
                }

                WakeAll();
                watch = TakeInboundWatch();
            }

            Notify(watch);

            if (held is not null || heldSending is not null)
            {
                _ = FinishAfterHeldAsync(held, heldLength, heldSending);
                sendFin = false;
            }

            if (sendFin || grant > 0)
            {
                // A finished exchange (the remote closed first, as a server does after its answer) has
                // nothing waiting on this FIN: it may ride with the session's next write, which a
                // request-response caller's next request is, instead of a connection write of its own.
                _session.EnqueueControl(new YamuxHeader(YamuxFrameType.WindowUpdate, sendFin ? YamuxFlags.Fin : YamuxFlags.None, Id, grant),
                    flush: true, soon: remoteDone && grant == 0);
            }

            RemoveIfClosed();
        }

        base.Dispose(disposing);
    }

    /// <summary>A disposed stream's FIN, after the bytes it held (in the same frame) or their send in flight.</summary>
    private async Task FinishAfterHeldAsync(byte[]? held, int heldLength, Task? heldSending)
    {
        try
        {
            if (held is not null)
            {
                await _session.WriteFrameAsync(new YamuxHeader(YamuxFrameType.Data, YamuxFlags.Fin, Id, (uint)heldLength), held.AsMemory(0, heldLength),
                    CancellationToken.None);
            }
            else
            {
                await heldSending!;
                _session.EnqueueControl(new YamuxHeader(YamuxFrameType.WindowUpdate, YamuxFlags.Fin, Id, 0));
            }
        }
        catch (YamuxException)
        {
            // The session ended: the remote learns of it from there.
        }
        finally
        {
            if (held is not null)
            {
                ArrayPool<byte>.Shared.Return(held);
            }
        }
    }

    internal uint PrepareAcceptGrant(int initialWindow)
    {
        lock (_lock)
        {
            var extra = initialWindow - _receiveWindowSize;
            if (extra <= 0)
            {
                return 0;
            }

            _receiveWindowSize += extra;
            _receiveCredit += extra;
            return (uint)extra;
        }
    }

    /// <summary>Checked before the payload is read, so nothing is allocated for a frame past the window.</summary>
    internal bool FitsReceiveWindow(uint length)
    {
        lock (_lock)
        {
            return length <= _receiveCredit;
        }
    }

    /// <summary>A small payload, copied (it is only lent: the session's read-ahead buffer holds it).</summary>
    internal void OnData(ReadOnlySpan<byte> payload) => OnData(null, payload);

    /// <summary>Takes ownership of <paramref name="segment"/> (rented from the shared pool), kept as it is.</summary>
    internal void OnData(byte[] segment, int length) => OnData(segment, segment.AsSpan(0, length));

    /// <param name="segment">The pooled array <paramref name="payload"/> lies at the start of, owned from now on; null when the payload is lent.</param>
    private void OnData(byte[]? segment, ReadOnlySpan<byte> payload)
    {
        var length = payload.Length;
        uint grant = 0;
        var reset = false;
        (Action<object?>, object?)? watch = null;
        lock (_lock)
        {
            _receiveCredit -= length;
            if (_resetError is not null)
            {
                ReturnToPool(segment);
                return;
            }

            if (_remoteFin)
            {
                ReturnToPool(segment);
                _resetError = new YamuxStreamResetException($"yamux stream {Id} received data after the remote's FIN");
                DropSegments();
                WakeAll();
                reset = true;
            }
            else if (_disposed)
            {
                ReturnToPool(segment);
                grant = TakeGrant(length, eager: true);
            }
            else
            {
                if (segment is null)
                {
                    Append(payload);
                }
                else
                {
                    SealTail();
                    _tail = segment;
                    _tailLength = length;
                }

                _buffered += length;
                WakeReader();
            }

            watch = TakeInboundWatch();
        }

        Notify(watch);

        if (reset)
        {
            _session.EnqueueControl(new YamuxHeader(YamuxFrameType.WindowUpdate, YamuxFlags.Rst, Id, 0));
            _session.RemoveStream(this);
        }
        else if (grant > 0)
        {
            _session.EnqueueControl(new YamuxHeader(YamuxFrameType.WindowUpdate, YamuxFlags.None, Id, grant));
        }
    }

    internal void OnWindowUpdate(uint delta)
    {
        if (delta == 0)
        {
            return;
        }

        lock (_lock)
        {
            _sendWindow += delta;
            if (_sendWaiter is { } waiter)
            {
                _sendWaiter = null;
                waiter.TrySetResult();
            }
        }
    }

    internal void OnRemoteFin()
    {
        TaskCompletionSource? reader;
        bool closed;
        (Action<object?>, object?)? watch;
        lock (_lock)
        {
            if (_resetError is not null || _remoteFin)
            {
                return;
            }

            _remoteFin = true;
            closed = _localFin;
            reader = _readWaiter;
            _readWaiter = null;
            watch = TakeInboundWatch();
        }

        // Removed before the reader wakes, so whoever sees end of stream also sees the count drop.
        if (closed)
        {
            _session.RemoveStream(this);
        }

        reader?.TrySetResult();
        Notify(watch);
    }

    internal void OnRemoteReset()
    {
        TaskCompletionSource? reader;
        TaskCompletionSource? sender;
        (Action<object?>, object?)? watch;
        lock (_lock)
        {
            if (_resetError is not null || (_localFin && _remoteFin))
            {
                return;
            }

            _resetError = new YamuxStreamResetException($"yamux stream {Id} was reset by the remote");
            DropHeld();
            DropSegments();
            (reader, sender) = (_readWaiter, _sendWaiter);
            (_readWaiter, _sendWaiter) = (null, null);
            watch = TakeInboundWatch();
        }

        _session.RemoveStream(this);
        reader?.TrySetResult();
        sender?.TrySetResult();
        Notify(watch);
    }

    internal void OnSessionClosed(YamuxException reason)
    {
        (Action<object?>, object?)? watch;
        lock (_lock)
        {
            if (_resetError is not null || (_localFin && _remoteFin))
            {
                return;
            }

            _resetError = new YamuxStreamResetException($"yamux stream {Id} ended with its session: {reason.Message}", reason);
            DropHeld();
            // A remote that sent its FIN had finished: what it sent is a whole answer, often closed on
            // at once (answer, FIN, go-away and the connection's end are read together), and nothing
            // can arrive after it, so it stays readable to its end, as go-yamux keeps it. Without the
            // FIN the data is cut short and no reader could trust it: it is dropped, as go-yamux fails
            // such a read at once, and a dead connection's streams give their arrays back now rather
            // than whenever each owner next reads or disposes.
            _drainAfterClose = _remoteFin;
            if (!_drainAfterClose)
            {
                DropSegments();
            }

            WakeAll();
            watch = TakeInboundWatch();
        }

        Notify(watch);
    }

    /// <summary>
    /// Waits until a read would not wait: true when bytes are here or the remote finished, false when
    /// the stream was reset or disposed. Lets a caller that expects the session to end tell that
    /// apart without an exception thrown through every layer of its reader.
    /// </summary>
    /// <param name="falseWhenCancelled">
    /// Cancellation ends the wait with false instead of an <see cref="OperationCanceledException"/>:
    /// for a caller that cancels because the connection closed and tells the reasons apart itself.
    /// </param>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled first, unless <paramref name="falseWhenCancelled"/>.</exception>
    internal async ValueTask<bool> WaitReadableAsync(CancellationToken cancellationToken, bool falseWhenCancelled = false)
    {
        while (true)
        {
            TaskCompletionSource waiter;
            lock (_lock)
            {
                if (_disposed || (_resetError is not null && !_drainAfterClose))
                {
                    return false;
                }

                if (_buffered > 0 || _remoteFin)
                {
                    return true;
                }

                if (falseWhenCancelled && cancellationToken.IsCancellationRequested)
                {
                    // The cancellation may have completed the waiter; a later reader must not find it done.
                    if (_readWaiter is { Task.IsCompleted: true }) _readWaiter = null;
                    return false;
                }

                waiter = _readWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }

            if (Volatile.Read(ref _held) is not null)
            {
                await FlushHeldQuietlyAsync();
            }

            if (!falseWhenCancelled)
            {
                await waiter.Task.WaitOrCancelAsync(cancellationToken);
                continue;
            }

            // Waking every reader of this stream on cancellation is harmless: each checks its state again.
            await using (cancellationToken.Register(static s => ((TaskCompletionSource)s!).TrySetResult(), waiter))
                await waiter.Task;
        }
    }

    /// <summary>
    /// Calls <paramref name="callback"/> once when the remote is done with this stream as a sender:
    /// more data, its FIN or RST, or the session's end; also when this side resets or disposes the
    /// stream. For a protocol that expects nothing more from the remote while it answers (a server
    /// watching whether its caller gave up): no read and no task wait for it. The callback runs on
    /// whichever thread learns of it (the session's read loop, typically) and must not block.
    /// Returns false, without calling it, when that has happened already. Nothing may read the
    /// stream while it is watched; <see cref="StopWatchingInbound"/> ends the watch.
    /// </summary>
    internal bool TryWatchInbound(Action<object?> callback, object? state)
    {
        lock (_lock)
        {
            if (_disposed || _resetError is not null || _remoteFin || _buffered > 0)
            {
                return false;
            }

            _inboundWatch = callback;
            _inboundWatchState = state;
            return true;
        }
    }

    /// <summary>Ends a watch begun with <see cref="TryWatchInbound"/>; a callback already taken by a racing event may still run.</summary>
    internal void StopWatchingInbound()
    {
        lock (_lock)
        {
            _inboundWatch = null;
            _inboundWatchState = null;
        }
    }

    /// <summary>Caller holds the lock; the watch's callback to run after releasing it, if one is set.</summary>
    private (Action<object?> Callback, object? State)? TakeInboundWatch()
    {
        if (_inboundWatch is not { } callback)
        {
            return null;
        }

        var state = _inboundWatchState;
        _inboundWatch = null;
        _inboundWatchState = null;
        return (callback, state);
    }

    private static void Notify((Action<object?> Callback, object? State)? watch)
    {
        if (watch is { } w)
        {
            w.Callback(w.State);
        }
    }

    /// <summary>True once, for the caller that returns this stream's slot in the outbound ACK backlog.</summary>
    internal bool ReleaseAckSlot() => Interlocked.Exchange(ref _holdsAckSlot, 0) == 1;

    private bool TryRead(Span<byte> destination, out int read, out Task? wait)
    {
        uint grant;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_drainAfterClose)
            {
                ThrowIfReset();
            }

            if (_buffered == 0)
            {
                wait = null;
                read = 0;
                if (_remoteFin || destination.IsEmpty)
                {
                    return true;
                }

                wait = (_readWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
                return false;
            }

            read = CopyOut(destination);
            grant = TakeGrant(read, eager: false);
            wait = null;
        }

        if (grant > 0)
        {
            _session.EnqueueControl(new YamuxHeader(YamuxFrameType.WindowUpdate, YamuxFlags.None, Id, grant));
        }

        return true;
    }

    private async ValueTask<int> ReadSlowAsync(Memory<byte> buffer, Task wait, CancellationToken cancellationToken)
    {
        // The remote may be waiting for the held bytes (a negotiation answer) before it sends more.
        if (Volatile.Read(ref _held) is not null)
        {
            await FlushHeldAsync(cancellationToken);
        }

        while (true)
        {
            // The token wakes the waiter itself: a read costs one continuation instead of the two (and
            // the helper task) that racing the waiter against the token took, and that is per call of
            // every request-response protocol.
            if (cancellationToken.CanBeCanceled)
            {
                var registration = cancellationToken.UnsafeRegister(s_cancelRead, this);
                try
                {
                    await wait;
                }
                finally
                {
                    registration.Unregister();
                }

                cancellationToken.ThrowIfCancellationRequested();
            }
            else
            {
                await wait;
            }

            if (TryRead(buffer.Span, out var read, out var next))
            {
                return read;
            }

            wait = next!;
        }
    }

    private static void ReturnToPool(byte[]? segment)
    {
        if (segment is not null)
        {
            ArrayPool<byte>.Shared.Return(segment);
        }
    }

    /// <summary>Caller holds the lock: copies <paramref name="payload"/> into the tail's spare room, and a new tail for what does not fit.</summary>
    private void Append(ReadOnlySpan<byte> payload)
    {
        while (!payload.IsEmpty)
        {
            if (_tail is null || _tailLength == _tail.Length)
            {
                SealTail();
                _tail = ArrayPool<byte>.Shared.Rent(Math.Max(ChunkSize, payload.Length));
            }

            var take = Math.Min(payload.Length, _tail.Length - _tailLength);
            payload[..take].CopyTo(_tail.AsSpan(_tailLength));
            _tailLength += take;
            payload = payload[take..];
        }
    }

    /// <summary>Caller holds the lock: the tail joins the sealed arrays, and nothing more is appended to it.</summary>
    private void SealTail()
    {
        if (_tail is not null)
        {
            (_sealed ??= new Queue<(byte[] Segment, int Length)>()).Enqueue((_tail, _tailLength));
            _tail = null;
            _tailLength = 0;
        }
    }

    private int CopyOut(Span<byte> destination)
    {
        var copied = 0;
        while (copied < destination.Length && (_sealed is { Count: > 0 } || _tail is not null))
        {
            var sealedHead = _sealed is { Count: > 0 };
            var (segment, length) = sealedHead ? _sealed!.Peek() : (_tail!, _tailLength);
            var take = Math.Min(length - _headOffset, destination.Length - copied);
            segment.AsSpan(_headOffset, take).CopyTo(destination[copied..]);
            copied += take;
            _headOffset += take;
            if (_headOffset == length)
            {
                // A tail read to its end goes back too, though it had room: a stream whose reader keeps
                // up holds no array between frames.
                if (sealedHead)
                {
                    _sealed!.Dequeue();
                }
                else
                {
                    _tail = null;
                    _tailLength = 0;
                }

                _headOffset = 0;
                ArrayPool<byte>.Shared.Return(segment);
            }
        }

        _buffered -= copied;
        return copied;
    }

    private int DropSegments()
    {
        var dropped = _buffered;
        while (_sealed is { } sealedSegments && sealedSegments.TryDequeue(out var segment))
        {
            ArrayPool<byte>.Shared.Return(segment.Segment);
        }

        ReturnToPool(_tail);
        _tail = null;
        _tailLength = 0;

        _headOffset = 0;
        _buffered = 0;
        return dropped;
    }

    /// <summary>
    /// Credit to give back after the application consumed <paramref name="consumed"/> bytes: batched
    /// until half the window is used, and the window doubles (up to the maximum) when it was used up
    /// within a few round trips, so a fast reader is not throttled by the update latency.
    /// </summary>
    private uint TakeGrant(int consumed, bool eager)
    {
        if (_remoteFin || _resetError is not null)
        {
            return 0;
        }

        _consumedUngranted += consumed;
        if (_consumedUngranted == 0 || (!eager && _consumedUngranted < _receiveWindowSize / 2))
        {
            return 0;
        }

        var delta = _consumedUngranted;
        var now = _session.TimeProvider.GetTimestamp();
        var rtt = _session.RoundTripTimestampTicks;
        if (!eager && rtt > 0 && _receiveWindowSize < _session.MaxStreamWindowSize && now - _windowEpoch < 4 * rtt)
        {
            var grown = (int)Math.Min(2L * _receiveWindowSize, _session.MaxStreamWindowSize);
            delta += grown - _receiveWindowSize;
            _receiveWindowSize = grown;
        }

        _windowEpoch = now;
        _consumedUngranted = 0;
        _receiveCredit += delta;
        return (uint)delta;
    }

    private void ThrowIfReset()
    {
        if (_resetError is { } error)
        {
            throw new YamuxStreamResetException(error.Message, error.InnerException);
        }
    }

    private YamuxStreamResetException SessionFailure(YamuxException sessionError)
    {
        lock (_lock)
        {
            return _resetError is { } error
                ? new YamuxStreamResetException(error.Message, error.InnerException)
                : new YamuxStreamResetException($"yamux stream {Id} ended with its session: {sessionError.Message}", sessionError);
        }
    }

    private void RemoveIfClosed()
    {
        bool closed;
        lock (_lock)
        {
            closed = _localFin && _remoteFin && _resetError is null;
        }

        if (closed)
        {
            _session.RemoveStream(this);
        }
    }

    private void WakeReader()
    {
        if (_readWaiter is { } waiter)
        {
            _readWaiter = null;
            waiter.TrySetResult();
        }
    }

    private void WakeAll()
    {
        WakeReader();
        if (_sendWaiter is { } waiter)
        {
            _sendWaiter = null;
            waiter.TrySetResult();
        }
    }
}
