using System.IO.Pipelines;
using P2PInference.TestKit.Simulation;

namespace P2PInference.TestKit.Network;

/// <summary>
/// Two connected in-memory <see cref="Stream"/>s, with no faults: what one writes the other reads.
/// Disposing one end completes the other's reads (end of stream). For unit tests of a single
/// protocol layer; the <c>InMemoryNetwork</c> adds addressing and fault injection on top.
/// </summary>
public static class DuplexStreamPair
{
    public static (Stream A, Stream B) Create(PipeOptions? options = null)
    {
        // In a simulation a reader's continuation runs inline on the writer's (simulation) thread: the
        // pipe's own thread-pool scheduling would leave the executor, and PipeReader.AsStream awaits
        // with ConfigureAwait(false), so a captured context would not be used.
        options ??= SimulationExecutor.Current is null
            ? new PipeOptions(pauseWriterThreshold: 1 << 20, resumeWriterThreshold: 1 << 19, useSynchronizationContext: false)
            : new PipeOptions(readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline,
                pauseWriterThreshold: 1 << 20, resumeWriterThreshold: 1 << 19, useSynchronizationContext: false);
        var ab = new Pipe(options);
        var ba = new Pipe(options);
        return (new PipeEnd(ba.Reader, ab.Writer), new PipeEnd(ab.Reader, ba.Writer));
    }

    private sealed class PipeEnd(PipeReader reader, PipeWriter writer) : Stream
    {
        private readonly Stream _read = reader.AsStream();
        private readonly Stream _write = writer.AsStream();
        private int _disposed;

        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public override int Read(byte[] buffer, int offset, int count) => _read.Read(buffer, offset, count);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => _read.ReadAsync(buffer, cancellationToken);
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => _read.ReadAsync(buffer, offset, count, cancellationToken);
        public override void Write(byte[] buffer, int offset, int count) => _write.Write(buffer, offset, count);
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => _write.WriteAsync(buffer, cancellationToken);
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => _write.WriteAsync(buffer, offset, count, cancellationToken);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                writer.Complete();
                reader.Complete();
            }
            base.Dispose(disposing);
        }
    }
}
