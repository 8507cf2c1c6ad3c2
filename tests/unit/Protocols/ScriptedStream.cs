namespace P2PInference.Tests.Unit.Protocols;

/// <summary>
/// A stream whose reads come from fixed bytes (then end of stream) and whose writes are recorded
/// call by call, so a test can check both what a codec sent and how many write calls it used.
/// </summary>
internal sealed class ScriptedStream(byte[] input) : Stream
{
    private readonly MemoryStream _input = new(input, writable: false);

    public List<byte[]> Writes { get; } = [];

    public byte[] Written => Writes.SelectMany(w => w).ToArray();

    /// <summary>How many input bytes the code under test has consumed.</summary>
    public long Consumed => _input.Position;

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override int Read(byte[] buffer, int offset, int count) => _input.Read(buffer, offset, count);
    /// <summary>The largest buffer a read was handed: what the code under test set aside for bytes not yet arrived.</summary>
    public int LargestReadBuffer { get; private set; }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        LargestReadBuffer = Math.Max(LargestReadBuffer, buffer.Length);
        return _input.ReadAsync(buffer, cancellationToken);
    }
    public override void Write(byte[] buffer, int offset, int count) => Writes.Add(buffer.AsSpan(offset, count).ToArray());
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Writes.Add(buffer.ToArray());
        return ValueTask.CompletedTask;
    }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
