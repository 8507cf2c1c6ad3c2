using System.Buffers;
using System.Net.Sockets;

namespace P2PInference.Facilities.Net.Transport;

/// <summary>
/// A raw connection's stream while it is upgraded (multistream-select and the security handshake):
/// reads are served from a buffer that one transport read fills with everything already received,
/// and writes are held back until this side next has to wait for the peer, so the messages of one
/// turn leave in one transport write. Handshake messages are a few dozen bytes each; read one
/// length prefix at a time from a socket they would cost a system call and a wake-up apiece.
/// </summary>
/// <remarks>
/// Held writes go out before any read that would wait, on <see cref="SendHeldAsync"/>, and when
/// <see cref="Detach"/> hands the transport to the secure channel (which then sends them first).
/// <see cref="FlushAsync(CancellationToken)"/> therefore sends nothing by itself: a protocol step
/// that writes and then reads (every handshake step) sends exactly when it starts to wait.
/// After <see cref="Release"/> writes go straight through (plaintext sessions keep this stream).
/// <para>
/// Plaintext sessions keep this stream for the connection's life, so it holds no buffer while idle:
/// the receive buffer is rented for a small read and returned once drained, and a zero-byte read
/// waits on the transport for data without taking any, as the muxer's read loop does between
/// frames. Returning at once instead made that loop rent its own buffer and hold both, about 6 KiB
/// per idle connection (a 1,000-peer DHT simulation holds 70,000 connection ends).
/// </para>
/// </remarks>
internal sealed class UpgradeStream : Stream, IShutdownStream
{
    /// <summary>Larger than a whole first turn (multistream messages and a Noise message with its identity payload).</summary>
    private const int BufferSize = 2048;

    private readonly Stream _inner;
    private byte[] _rx = [];
    private int _rxStart;
    private int _rxEnd;
    private byte[]? _held;
    private int _heldLength;
    private bool _released;
    private bool _detached;

    public UpgradeStream(Stream inner) => _inner = inner;

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    /// <summary>
    /// Whether the peer's next bytes are already here (buffered, or waiting in the socket), so a
    /// listener may read them before it answers and answer in one write.
    /// </summary>
    public bool DataAvailable
    {
        get
        {
            if (_rxEnd > _rxStart) return true;
            try
            {
                return _inner is NetworkStream network && network.DataAvailable;
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
            {
                // A broken socket has nothing to offer; the next read reports why.
                return false;
            }
        }
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_detached, this);
        if (_rxEnd > _rxStart) return new ValueTask<int>(buffer.IsEmpty ? 0 : CopyBuffered(buffer.Span));
        return buffer.IsEmpty ? WaitForDataAsync(cancellationToken) : ReadFromInnerAsync(buffer, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("the upgrade reads asynchronously");

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_detached, this);
        if (buffer.IsEmpty) return ValueTask.CompletedTask;
        if (_released) return _inner.WriteAsync(buffer, cancellationToken);
        Hold(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("the upgrade writes asynchronously");

    /// <summary>A plaintext session keeps this stream: its close ends writes as the transport's does.</summary>
    public bool TryShutdownWrites() => !_detached && _inner is IShutdownStream transport && transport.TryShutdownWrites();

    /// <summary>Sends nothing while writes are held (see the remarks); afterwards, the transport's flush.</summary>
    public override Task FlushAsync(CancellationToken cancellationToken) =>
        _released ? _inner.FlushAsync(cancellationToken) : Task.CompletedTask;

    public override void Flush()
    {
    }

    /// <summary>Sends the writes held so far, in one transport write.</summary>
    public async ValueTask SendHeldAsync(CancellationToken cancellationToken)
    {
        if (_heldLength == 0) return;
        var held = _held!;
        var length = _heldLength;
        _held = null;
        _heldLength = 0;
        try
        {
            await _inner.WriteAsync(held.AsMemory(0, length), cancellationToken);
            await _inner.FlushAsync(cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(held);
        }
    }

    /// <summary>Sends what is held and lets later writes through at once; reads still drain the buffer first.</summary>
    public ValueTask ReleaseAsync(CancellationToken cancellationToken)
    {
        _released = true;
        return SendHeldAsync(cancellationToken);
    }

    /// <summary>
    /// True when writes go straight through (<see cref="ReleaseAsync"/>) and nothing is buffered either
    /// way: reading and writing the transport itself is then the same as using this stream.
    /// </summary>
    public bool IsPassThrough => _released && !_detached && _heldLength == 0 && _rxEnd == _rxStart;

    /// <summary>
    /// Ends the upgrade phase: returns the transport stream with the bytes received past the last
    /// handshake message (<paramref name="received"/>) and the writes not sent yet
    /// (<paramref name="unsent"/>), which the caller must send before anything else. This stream
    /// is unusable afterwards and disposing it no longer disposes the transport.
    /// </summary>
    public Stream Detach(out byte[] received, out byte[] unsent)
    {
        ObjectDisposedException.ThrowIf(_detached, this);
        _detached = true;
        received = _rxEnd > _rxStart ? _rx.AsSpan(_rxStart, _rxEnd - _rxStart).ToArray() : [];
        unsent = _heldLength > 0 ? _held.AsSpan(0, _heldLength).ToArray() : [];
        ReturnBuffers();
        return _inner;
    }

    /// <summary>A zero-byte read with nothing buffered: waits on the transport until data comes (or at once, if it cannot wait).</summary>
    private ValueTask<int> WaitForDataAsync(CancellationToken cancellationToken) =>
        // Nothing to send first (always so on an established plaintext session): the transport's own wait,
        // without a frame of ours that a connection reset would be rethrown through.
        _heldLength == 0 ? _inner.ReadAsync(Memory<byte>.Empty, cancellationToken) : SendHeldThenWaitAsync(cancellationToken);

    private async ValueTask<int> SendHeldThenWaitAsync(CancellationToken cancellationToken)
    {
        await SendHeldAsync(cancellationToken);
        return await _inner.ReadAsync(Memory<byte>.Empty, cancellationToken);
    }

    private async ValueTask<int> ReadFromInnerAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        // This side is about to wait for the peer: whatever it said so far must be on its way.
        await SendHeldAsync(cancellationToken);
        // A read too large for the buffer (a big handshake frame, a muxer's read-ahead) goes straight into the caller's memory.
        if (buffer.Length >= BufferSize) return await _inner.ReadAsync(buffer, cancellationToken);
        if (_rx.Length == 0) _rx = ArrayPool<byte>.Shared.Rent(BufferSize);
        var received = await _inner.ReadAsync(_rx, cancellationToken);
        if (received == 0)
        {
            ArrayPool<byte>.Shared.Return(_rx);
            _rx = [];
            return 0;
        }
        _rxStart = 0;
        _rxEnd = received;
        return CopyBuffered(buffer.Span);
    }

    private int CopyBuffered(Span<byte> destination)
    {
        var count = Math.Min(destination.Length, _rxEnd - _rxStart);
        _rx.AsSpan(_rxStart, count).CopyTo(destination);
        _rxStart += count;
        if (_rxStart == _rxEnd)
        {
            // Drained, and no transport read is filling it (one runs only while it is empty): back to the pool.
            _rxStart = _rxEnd = 0;
            ArrayPool<byte>.Shared.Return(_rx);
            _rx = [];
        }
        return count;
    }

    private void Hold(ReadOnlySpan<byte> data)
    {
        var needed = _heldLength + data.Length;
        if (_held is null || _held.Length < needed)
        {
            var grown = ArrayPool<byte>.Shared.Rent(Math.Max(needed, 512));
            if (_held is not null)
            {
                _held.AsSpan(0, _heldLength).CopyTo(grown);
                ArrayPool<byte>.Shared.Return(_held);
            }
            _held = grown;
        }
        data.CopyTo(_held.AsSpan(_heldLength));
        _heldLength = needed;
    }

    private void ReturnBuffers()
    {
        if (_rx.Length > 0) ArrayPool<byte>.Shared.Return(_rx);
        _rx = [];
        _rxStart = _rxEnd = 0;
        if (_held is not null) ArrayPool<byte>.Shared.Return(_held);
        _held = null;
        _heldLength = 0;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && !_detached)
        {
            // The buffers are not returned to the pool: a read cancelled by this dispose may still be
            // filling the receive buffer.
            _detached = true;
            _inner.Dispose();
        }
        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        if (!_detached)
        {
            _detached = true;
            await _inner.DisposeAsync();
        }
        GC.SuppressFinalize(this);
    }
}
