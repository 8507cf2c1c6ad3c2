using System.Buffers;
using System.Buffers.Binary;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Facilities.Net.Noise;

/// <summary>
/// The transport phase of a libp2p Noise channel: a duplex stream whose bytes travel as
/// length-prefixed ChaChaPoly frames of at most 65535 bytes. Owns the insecure stream beneath.
/// </summary>
/// <remarks>
/// One read and one write may run at the same time (a read loop beside a send path); two reads or
/// two writes at once are a caller bug and throw. Each write is encrypted and handed to the insecure
/// stream before it completes: nothing is held back for <see cref="FlushAsync(CancellationToken)"/>.
/// A frame that fails to decrypt, a truncated frame, or a write that failed part way leaves the
/// stream unusable: every later read and write throws <see cref="NoiseException"/>.
/// </remarks>
public sealed class NoiseSecureStream : Stream, IShutdownStream
{
    /// <summary>Room for one whole frame plus the next one's head, so compaction always makes space.</summary>
    private const int ReceiveBufferSize = 1 << 17;
    /// <summary>
    /// Holds the small frames of control traffic, pings and RPC messages. The receive buffer is this
    /// size while the traffic is small and whenever the connection idles, so an idle connection
    /// pins 4 KiB rather than 128 KiB; it grows for a frame that needs more.
    /// </summary>
    private const int SmallReceiveBufferSize = 4096;
    /// <summary>Frames encrypted per write to the insecure stream: fewer calls, bounded memory.</summary>
    private const int FramesPerWrite = 4;

    private const int Idle = 0;
    private const int Busy = 1;
    private const int Retired = 2;

    private readonly Stream _inner;
    private readonly CipherState _send;
    private readonly CipherState _receive;

    // Read side, touched only by the one reader at a time. Ciphertext arrives in _rx[_rxStart.._rxEnd);
    // a frame that outgrows the caller's buffer is decrypted in place and served from _plainOffset.
    private byte[] _rx;
    private int _rxStart;
    private int _rxEnd;
    private int _plainOffset;
    private int _plainCount;
    private int _lastFrameLength;
    private int _readState;
    private int _writeState;

    private NoiseException? _fault;
    private int _disposed;

    /// <summary>Handshake bytes not sent yet (the initiator's last message), which lead the first write.</summary>
    private byte[] _sendFirst;

    /// <param name="received">Bytes the handshake read past its last message: the start of the transport phase.</param>
    /// <param name="sendFirst">The handshake's last message when it was held back to travel with the first
    /// write; the owner writes at once (the upgrade's muxer proposal), or the peer waits for it.</param>
    internal NoiseSecureStream(Stream inner, CipherState send, CipherState receive, PublicKey remotePublicKey,
        ReadOnlySpan<byte> received = default, byte[]? sendFirst = null)
    {
        _inner = inner;
        _send = send;
        _receive = receive;
        RemotePublicKey = remotePublicKey;
        RemotePeer = remotePublicKey.ToPeerId();
        _rx = [];
        _sendFirst = sendFirst ?? [];
        if (!received.IsEmpty)
        {
            _rx = ArrayPool<byte>.Shared.Rent(Math.Max(received.Length, SmallReceiveBufferSize));
            received.CopyTo(_rx);
            _rxEnd = received.Length;
        }
    }

    /// <summary>
    /// Whether the peer's next bytes are already here, so a reader will not wait for them (a
    /// listener then answers a negotiation in one write).
    /// </summary>
    internal bool HasBufferedData => _plainCount > 0 || _rxEnd > _rxStart;

    /// <summary>The stream muxer chosen inside the handshake (early muxer negotiation); null when multistream-select must choose it.</summary>
    internal string? EarlyMuxer { get; init; }

    /// <summary>
    /// Sends the handshake's held last message now, alone: for an initiator whose muxer was chosen in the
    /// handshake, so the responder's upgrade does not wait for this side's first write.
    /// </summary>
    internal async ValueTask SendHandshakeRestAsync(CancellationToken cancellationToken)
    {
        if (_sendFirst.Length == 0) return;
        EnterWrite();
        var first = _sendFirst;
        _sendFirst = [];
        try
        {
            await _inner.WriteAsync(first, cancellationToken);
        }
        catch (Exception e)
        {
            Fail(new NoiseException("the handshake's last message could not be sent; the secure channel is unusable", e));
            throw;
        }
        finally
        {
            ExitWrite();
        }
    }

    /// <summary>The authenticated remote peer.</summary>
    public PeerId RemotePeer { get; }

    /// <summary>The remote's identity key, whose signature over its Noise static key was verified.</summary>
    public PublicKey RemotePublicKey { get; }

    public override bool CanRead => Volatile.Read(ref _disposed) == 0;
    public override bool CanWrite => Volatile.Read(ref _disposed) == 0;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        EnterRead();
        int read;
        try
        {
            read = buffer.IsEmpty ? 0 : ReadBuffered(buffer.Span);
        }
        catch
        {
            ExitRead();
            throw;
        }
        if (read >= 0)
        {
            ExitRead();
            return new ValueTask<int>(read);
        }
        return ReadFromInnerAsync(buffer, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        // The synchronous path is for completeness only; traffic goes through ReadAsync.
        var rented = ArrayPool<byte>.Shared.Rent(buffer.Length);
        try
        {
            var read = ReadAsync(rented.AsMemory(0, buffer.Length)).AsTask().GetAwaiter().GetResult();
            rented.AsSpan(0, read).CopyTo(buffer);
            return read;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        EnterWrite();
        if (buffer.IsEmpty)
        {
            ExitWrite();
            return ValueTask.CompletedTask;
        }
        return WriteFramesAsync(buffer, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) =>
        WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        var rented = ArrayPool<byte>.Shared.Rent(buffer.Length);
        try
        {
            buffer.CopyTo(rented);
            WriteAsync(rented.AsMemory(0, buffer.Length)).AsTask().GetAwaiter().GetResult();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Ends the transport's writes beneath (see <see cref="IShutdownStream"/>); no frame is written after it.</summary>
    bool IShutdownStream.TryShutdownWrites() => Volatile.Read(ref _disposed) == 0 && _inner is IShutdownStream transport && transport.TryShutdownWrites();

    public override void Flush() => _inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => _inner.FlushAsync(cancellationToken);

    /// <summary>
    /// Serves buffered plaintext, decrypting whole frames already received. Returns -1 when the next
    /// frame is not fully buffered yet.
    /// </summary>
    private int ReadBuffered(Span<byte> destination)
    {
        while (true)
        {
            if (_plainCount > 0)
            {
                var count = Math.Min(_plainCount, destination.Length);
                _rx.AsSpan(_plainOffset, count).CopyTo(destination);
                _plainOffset += count;
                _plainCount -= count;
                return count;
            }
            var available = _rxEnd - _rxStart;
            if (available < NoiseFraming.HeaderSize) return -1;
            int length = BinaryPrimitives.ReadUInt16BigEndian(_rx.AsSpan(_rxStart));
            if (length < CipherState.TagSize)
                throw Fail(new NoiseException($"transport frame of {length} bytes is shorter than its {CipherState.TagSize}-byte tag"));
            if (available < NoiseFraming.HeaderSize + length) return -1;

            _lastFrameLength = length;
            var ciphertext = _rx.AsSpan(_rxStart + NoiseFraming.HeaderSize, length);
            var plainLength = length - CipherState.TagSize;
            var offset = _rxStart + NoiseFraming.HeaderSize;
            _rxStart += NoiseFraming.HeaderSize + length;
            if (_rxStart == _rxEnd) _rxStart = _rxEnd = 0;
            try
            {
                if (plainLength > 0 && plainLength <= destination.Length)
                {
                    // Straight into the caller's buffer: no second copy.
                    return _receive.DecryptWithAd(ReadOnlySpan<byte>.Empty, ciphertext, destination);
                }
                // In place: the plaintext stays where the ciphertext was until it is read. _rxStart has
                // moved past it, but the buffer is only compacted when no plaintext is pending.
                _receive.DecryptWithAd(ReadOnlySpan<byte>.Empty, ciphertext, ciphertext);
            }
            catch (NoiseException e)
            {
                throw Fail(e);
            }
            _plainOffset = offset;
            _plainCount = plainLength;
            // An empty frame (plainLength 0) is legal and simply loops on to the next one.
        }
    }

    private async ValueTask<int> ReadFromInnerAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                var available = _rxEnd - _rxStart;
                // Nothing buffered and small traffic lately: wait with the small buffer. (No plaintext is
                // pending here, since ReadBuffered found none, so the buffer can be swapped.)
                if (available == 0 && _rx.Length != SmallReceiveBufferSize && _lastFrameLength <= SmallReceiveBufferSize / 2)
                    SwapReceiveBuffer(SmallReceiveBufferSize);
                var needed = available < NoiseFraming.HeaderSize
                    ? NoiseFraming.HeaderSize
                    : NoiseFraming.HeaderSize + BinaryPrimitives.ReadUInt16BigEndian(_rx.AsSpan(_rxStart));
                if (_rx.Length < needed)
                {
                    SwapReceiveBuffer(ReceiveBufferSize);
                }
                else if (_rx.Length - _rxStart < needed)
                {
                    Buffer.BlockCopy(_rx, _rxStart, _rx, 0, available);
                    _rxStart = 0;
                    _rxEnd = available;
                }
                var received = await _inner.ReadAsync(_rx.AsMemory(_rxEnd), cancellationToken);
                if (received == 0)
                {
                    if (available == 0) return 0;
                    throw Fail(new NoiseException($"connection closed inside a frame ({available} of {needed} bytes received)"));
                }
                _rxEnd += received;
                var read = ReadBuffered(buffer.Span);
                if (read >= 0) return read;
            }
        }
        finally
        {
            ExitRead();
        }
    }

    private async ValueTask WriteFramesAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var frames = (data.Length + NoiseFraming.MaxPlaintextSize - 1) / NoiseFraming.MaxPlaintextSize;
        var overhead = NoiseFraming.HeaderSize + CipherState.TagSize;
        var batch = Math.Min(frames, FramesPerWrite);
        var size = frames <= FramesPerWrite ? data.Length + frames * overhead : batch * NoiseFraming.MaxFramedSize;
        var first = _sendFirst;
        var tx = ArrayPool<byte>.Shared.Rent(size + first.Length);
        try
        {
            var used = 0;
            if (first.Length > 0)
            {
                _sendFirst = [];
                first.CopyTo(tx, 0);
                used = first.Length;
            }
            while (!data.IsEmpty)
            {
                while (!data.IsEmpty)
                {
                    var chunk = Math.Min(data.Length, NoiseFraming.MaxPlaintextSize);
                    if (used + chunk + overhead > tx.Length) break;
                    BinaryPrimitives.WriteUInt16BigEndian(tx.AsSpan(used), (ushort)(chunk + CipherState.TagSize));
                    used += NoiseFraming.HeaderSize;
                    used += _send.EncryptWithAd(ReadOnlySpan<byte>.Empty, data.Span[..chunk], tx.AsSpan(used));
                    data = data[chunk..];
                }
                await _inner.WriteAsync(tx.AsMemory(0, used), cancellationToken);
                used = 0;
            }
        }
        catch (Exception e)
        {
            // Frames already encrypted may be half sent and their nonces are spent: the peer can never
            // decrypt what would follow, so the channel is finished.
            Fail(e as NoiseException ?? new NoiseException("write failed part way; the secure channel is unusable", e));
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(tx);
            ExitWrite();
        }
    }

    /// <summary>Moves the buffered ciphertext into a pooled buffer of <paramref name="size"/> bytes and returns the old one.</summary>
    private void SwapReceiveBuffer(int size)
    {
        var old = _rx;
        var available = _rxEnd - _rxStart;
        var rx = ArrayPool<byte>.Shared.Rent(size);
        if (available > 0) Buffer.BlockCopy(old, _rxStart, rx, 0, available);
        _rx = rx;
        _rxStart = 0;
        _rxEnd = available;
        if (old.Length > 0) ArrayPool<byte>.Shared.Return(old);
    }

    private NoiseException Fail(NoiseException e)
    {
        Interlocked.CompareExchange(ref _fault, e, null);
        return e;
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var fault = Volatile.Read(ref _fault);
        if (fault is not null)
            throw new NoiseException("the secure channel failed earlier and is unusable: " + fault.Message, fault);
    }

    private void EnterRead()
    {
        var previous = Interlocked.CompareExchange(ref _readState, Busy, Idle);
        if (previous == Retired) throw new ObjectDisposedException(nameof(NoiseSecureStream));
        if (previous == Busy) throw new InvalidOperationException("a read is already in progress on this stream");
        try
        {
            ThrowIfUnusable();
        }
        catch
        {
            ExitRead();
            throw;
        }
    }

    private void ExitRead()
    {
        Volatile.Write(ref _readState, Idle);
        // Dispose could not return the receive buffer while this read used it; whoever retires it returns it.
        if (Volatile.Read(ref _disposed) != 0) RetireReceiveBuffer();
    }

    private void EnterWrite()
    {
        if (Interlocked.CompareExchange(ref _writeState, Busy, Idle) == Busy)
            throw new InvalidOperationException("a write is already in progress on this stream");
        try
        {
            ThrowIfUnusable();
        }
        catch
        {
            ExitWrite();
            throw;
        }
    }

    private void ExitWrite() => Volatile.Write(ref _writeState, Idle);

    private void RetireReceiveBuffer()
    {
        if (Interlocked.CompareExchange(ref _readState, Retired, Idle) != Idle) return;
        var rx = _rx;
        _rx = [];
        if (rx.Length > 0) ArrayPool<byte>.Shared.Return(rx);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _inner.Dispose();
            RetireReceiveBuffer();
            // The AEAD handles are safe handles: a write racing this dispose fails cleanly rather than
            // touching freed memory.
            _send.Dispose();
            _receive.Dispose();
        }
        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await _inner.DisposeAsync();
            RetireReceiveBuffer();
            _send.Dispose();
            _receive.Dispose();
        }
        GC.SuppressFinalize(this);
    }
}
