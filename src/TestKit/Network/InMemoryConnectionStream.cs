using P2PInference.Facilities.Net.Transport;

namespace P2PInference.TestKit.Network;

/// <summary>One end of an in-memory connection as a duplex <see cref="Stream"/>.</summary>
internal sealed class InMemoryConnectionStream : Stream, IShutdownStream
{
    private readonly MemoryConnection _connection;
    private readonly MemoryFlow _incoming;
    private readonly MemoryFlow _outgoing;
    private readonly bool _dialerSide;
    private int _disposed;

    public InMemoryConnectionStream(MemoryConnection connection, bool dialerSide)
    {
        _connection = connection;
        _dialerSide = dialerSide;
        (_incoming, _outgoing) = dialerSide ? (connection.ToDialer, connection.ToListener) : (connection.ToListener, connection.ToDialer);
    }

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush() { }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return _incoming.ReadAsync(buffer, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var rented = new byte[buffer.Length];
        var n = ReadAsync(rented, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        rented.AsSpan(0, n).CopyTo(buffer);
        return n;
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return _outgoing.WriteAsync(buffer, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) =>
        WriteAsync(buffer.AsMemory(offset, count), CancellationToken.None).AsTask().GetAwaiter().GetResult();

    /// <summary>Ends this end's writes; reads go on until the remote ends its own (see <see cref="IShutdownStream"/>).</summary>
    public bool TryShutdownWrites()
    {
        if (Volatile.Read(ref _disposed) != 0) return false;
        _outgoing.CompleteWriter();
        return true;
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0) _connection.CloseEnd(_dialerSide);
        base.Dispose(disposing);
    }

    public override ValueTask DisposeAsync()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }
}
