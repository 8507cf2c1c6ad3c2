using System.Buffers;

namespace P2PInference.Facilities.Net.Yamux;

/// <summary>
/// Reads yamux frames from the connection through one read-ahead buffer, so small frames cost no
/// extra read call each, while large payloads are read straight into their destination.
/// Used by the session's single read loop only.
/// </summary>
/// <remarks>
/// <para>
/// An idle connection holds no buffer: between frames the reader waits with a zero-byte read (which
/// socket and in-memory streams complete when data arrives, others at once), rents the buffer from
/// the pool when bytes come, and returns it once they are consumed. A host with tens of thousands of
/// mostly idle connections keeps its memory for the traffic it has.
/// </para>
/// <para>
/// The buffer is small because payloads of half its size or more bypass it anyway: a bigger one only
/// saves copies of small frames.
/// </para>
/// </remarks>
internal sealed class YamuxFrameReader(Stream connection, int bufferSize = 4 * 1024)
{
    private static readonly byte[] None = [];
    private byte[] _buffer = None;
    private int _start;
    private int _end;

    private int Buffered => _end - _start;

    /// <summary>True when the next frame, header and payload, is here already: handling it cannot wait for the connection.</summary>
    public bool NextFrameBuffered
    {
        get
        {
            if (Buffered < YamuxHeader.Size)
            {
                return false;
            }

            var header = YamuxHeader.Read(_buffer.AsSpan(_start, YamuxHeader.Size));
            return header.Type != YamuxFrameType.Data || header.Length <= (uint)(Buffered - YamuxHeader.Size);
        }
    }

    /// <summary>
    /// With nothing buffered, gives the buffer back to the pool and waits (a zero-byte read) until the
    /// connection has bytes or ends; otherwise completes at once. Not an async method: an idle session
    /// then waits on the connection's read alone, with no state machine of the reader's parked per
    /// connection, and <see cref="ReadHeaderAsync"/> after it usually completes without suspending.
    /// </summary>
    public ValueTask<int> WaitForBytesAsync(CancellationToken cancellationToken)
    {
        if (Buffered > 0)
        {
            return ValueTask.FromResult(0);
        }

        Release();
        return connection.ReadAsync(Memory<byte>.Empty, cancellationToken);
    }

    /// <summary>The header <see cref="ReadHeaderAsync"/> read last.</summary>
    public YamuxHeader Header { get; private set; }

    /// <summary>
    /// Reads the next header into <see cref="Header"/>: its size, or 0 at a clean end of stream between
    /// frames. A count, not the header: the session's read loop then awaits this and
    /// <see cref="WaitForBytesAsync"/> through one awaiter field, and every open session parks that state machine.
    /// </summary>
    public async ValueTask<int> ReadHeaderAsync(CancellationToken cancellationToken)
    {
        if (Buffered < YamuxHeader.Size)
        {
            Compact();
            while (Buffered < YamuxHeader.Size)
            {
                var read = await connection.ReadAsync(_buffer.AsMemory(_end), cancellationToken);
                if (read == 0)
                {
                    if (Buffered == 0)
                    {
                        return 0;
                    }

                    throw new YamuxException($"connection ended inside a frame header ({Buffered} of {YamuxHeader.Size} bytes)");
                }

                _end += read;
            }
        }

        Header = YamuxHeader.Read(_buffer.AsSpan(_start, YamuxHeader.Size));
        _start += YamuxHeader.Size;
        return YamuxHeader.Size;
    }

    /// <summary>
    /// Payloads shorter than this are copied out of the read-ahead buffer anyway; longer ones are read
    /// straight into their destination (<see cref="ReadPayloadAsync"/>).
    /// </summary>
    public int SmallPayloadLimit => bufferSize / 2;

    /// <summary>
    /// A payload shorter than <see cref="SmallPayloadLimit"/>, in place in the read-ahead buffer: the
    /// caller copies it where it belongs with no array of its own, and must be done with it before
    /// the next call on this reader, which may move or return the buffer.
    /// </summary>
    public ValueTask<ReadOnlyMemory<byte>> ReadSmallPayloadAsync(int length, CancellationToken cancellationToken)
    {
        if (length >= SmallPayloadLimit)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, "Longer payloads are read with ReadPayloadAsync.");
        }

        return Buffered >= length ? new ValueTask<ReadOnlyMemory<byte>>(Take(length)) : FillAndTakeAsync(length, cancellationToken);
    }

    private async ValueTask<ReadOnlyMemory<byte>> FillAndTakeAsync(int length, CancellationToken cancellationToken)
    {
        await FillAsync(length, cancellationToken);
        return Take(length);
    }

    private ReadOnlyMemory<byte> Take(int length)
    {
        var payload = _buffer.AsMemory(_start, length);
        _start += length;
        return payload;
    }

    public async ValueTask ReadPayloadAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        var fromBuffer = Math.Min(Buffered, destination.Length);
        _buffer.AsMemory(_start, fromBuffer).CopyTo(destination);
        _start += fromBuffer;
        destination = destination[fromBuffer..];

        if (destination.Length >= bufferSize / 2)
        {
            while (destination.Length > 0)
            {
                var read = await connection.ReadAsync(destination, cancellationToken);
                if (read == 0)
                {
                    throw Truncated();
                }

                destination = destination[read..];
            }

            return;
        }

        if (destination.Length > 0)
        {
            await FillAsync(destination.Length, cancellationToken);
            _buffer.AsMemory(_start, destination.Length).CopyTo(destination);
            _start += destination.Length;
        }
    }

    /// <summary>Discards a payload nobody wants, without allocating for it.</summary>
    public async ValueTask SkipAsync(long count, CancellationToken cancellationToken)
    {
        while (count > 0)
        {
            if (Buffered == 0)
            {
                await FillAsync(1, cancellationToken);
            }

            var skip = (int)Math.Min(count, Buffered);
            _start += skip;
            count -= skip;
        }
    }

    private async ValueTask FillAsync(int count, CancellationToken cancellationToken)
    {
        Compact();
        while (Buffered < count)
        {
            var read = await connection.ReadAsync(_buffer.AsMemory(_end), cancellationToken);
            if (read == 0)
            {
                throw Truncated();
            }

            _end += read;
        }
    }

    /// <summary>Returns the buffer to the pool when nothing is left in it (the session calls it once its read loop ends).</summary>
    public void Release()
    {
        if (Buffered > 0 || _buffer.Length == 0)
        {
            return;
        }

        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = None;
        _start = _end = 0;
    }

    /// <summary>Moves the buffered bytes to the front of the buffer, renting one first if there is none.</summary>
    private void Compact()
    {
        if (_buffer.Length == 0)
        {
            _buffer = ArrayPool<byte>.Shared.Rent(bufferSize);
            return;
        }

        if (_start == 0)
        {
            return;
        }

        var buffered = Buffered;
        if (buffered > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, buffered);
        }

        _start = 0;
        _end = buffered;
    }

    private static YamuxException Truncated() => new("connection ended inside a frame payload");
}
