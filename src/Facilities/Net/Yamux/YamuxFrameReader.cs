namespace P2PInference.Facilities.Net.Yamux;

/// <summary>
/// Reads yamux frames from the connection through one read-ahead buffer, so small frames cost no
/// extra read call each, while large payloads are read straight into their destination.
/// Used by the session's single read loop only.
/// </summary>
/// <remarks>
/// The buffer is small because it stays pinned by the read waiting on an idle connection, and
/// payloads of half its size or more bypass it anyway: a bigger one only saves copies of small frames.
/// </remarks>
internal sealed class YamuxFrameReader(Stream connection, int bufferSize = 4 * 1024)
{
    private readonly byte[] _buffer = new byte[bufferSize];
    private int _start;
    private int _end;

    private int Buffered => _end - _start;

    /// <summary>The next header, or null at a clean end of stream between frames.</summary>
    public async ValueTask<YamuxHeader?> ReadHeaderAsync(CancellationToken cancellationToken)
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
                        return null;
                    }

                    throw new YamuxException($"connection ended inside a frame header ({Buffered} of {YamuxHeader.Size} bytes)");
                }

                _end += read;
            }
        }

        var header = YamuxHeader.Read(_buffer.AsSpan(_start, YamuxHeader.Size));
        _start += YamuxHeader.Size;
        return header;
    }

    public async ValueTask ReadPayloadAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        var fromBuffer = Math.Min(Buffered, destination.Length);
        _buffer.AsMemory(_start, fromBuffer).CopyTo(destination);
        _start += fromBuffer;
        destination = destination[fromBuffer..];

        if (destination.Length >= _buffer.Length / 2)
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

    private void Compact()
    {
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
