using System.Buffers;
using System.IO.Pipelines;
using Microsoft.Extensions.Time.Testing;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Net.Yamux;

namespace P2PInference.Tests.Unit.Yamux;

/// <summary>
/// A local close over a connection that can end its own writes (TCP, in memory): an orderly
/// release in which the read loop ends at the remote's end of stream, not at a cancelled read, and
/// a write into a session that closed reports false to a caller that asked for no exception.
/// </summary>
[TestFixture]
[CancelAfter(10000)]
public sealed class YamuxQuietCloseTests
{
    private static readonly YamuxOptions NoKeepAlive = new() { KeepAliveInterval = null };

    [Test]
    public async Task Dispose_EndsTheReadLoopAtTheRemotesEndOfStream_WithoutCancellingTheRead(CancellationToken token)
    {
        var (a, b) = HalfClosablePair.Create();
        var client = new YamuxSession(a, isInitiator: true, NoKeepAlive);
        var server = new YamuxSession(b, isInitiator: false, NoKeepAlive);

        await client.DisposeAsync();
        await server.Completion;

        Assert.That(a.WritesShutDown, Is.True, "the closing side ends its writes first");
        Assert.That(a.ReadsCancelled + b.ReadsCancelled, Is.Zero, "neither read loop needed its read cancelled");
        Assert.That(client.Completion.IsCompletedSuccessfully && server.Completion.IsCompletedSuccessfully, Is.True);
    }

    [Test]
    public async Task Dispose_StillReadsWhatTheRemoteSendsUntilItsEndOfStream(CancellationToken token)
    {
        // The remote is a raw peer here: it learns of the close, writes once more, and only then closes.
        var (a, b) = HalfClosablePair.Create();
        var client = new YamuxSession(a, isInitiator: true, NoKeepAlive);

        var closing = client.DisposeAsync().AsTask();
        var frames = await ReadToEndOfStreamAsync(b, token);
        Assert.That(YamuxHeader.Read(frames.AsSpan(frames.Length - YamuxHeader.Size)).Type, Is.EqualTo(YamuxFrameType.GoAway),
            "the go-away is the last frame before the end of stream");
        Assert.That(closing.IsCompleted, Is.False, "the close waits for the remote's end of stream");

        // A frame for a stream the closed session no longer knows is read and dropped, not refused.
        var late = new byte[YamuxHeader.Size + 3];
        new YamuxHeader(YamuxFrameType.Data, YamuxFlags.None, 2, 3).Write(late);
        await b.WriteAsync(late, token);
        b.ShutdownWrites();
        await closing;

        Assert.That(a.ReadsCancelled, Is.Zero);
        Assert.That(b.WriteFailed, Is.False);
    }

    [Test]
    public async Task Dispose_CancelsTheReadAfterTheGrace_WhenTheRemoteNeverCloses(CancellationToken token)
    {
        var time = new FakeTimeProvider();
        var (a, b) = HalfClosablePair.Create();
        var client = new YamuxSession(a, isInitiator: true, new YamuxOptions { KeepAliveInterval = null, TimeProvider = time });

        var closing = client.DisposeAsync().AsTask();
        // The end of stream comes once the grace timer is armed.
        await ReadToEndOfStreamAsync(b, token);
        Assert.That(closing.IsCompleted, Is.False);

        time.Advance(TimeSpan.FromSeconds(2));
        // A remote that never closes costs the cancelled read it was spared otherwise.
        await closing;

        Assert.That(client.Completion.IsCompletedSuccessfully, Is.True);
    }

    [Test]
    public async Task Dispose_CancelsTheRead_WhenTheConnectionCannotEndItsWrites(CancellationToken token)
    {
        var (a, b) = HalfClosablePair.Create(canShutdown: false);
        var client = new YamuxSession(a, isInitiator: true, NoKeepAlive);

        // The remote never closes: the close must not wait for it.
        await client.DisposeAsync();

        Assert.That(a.ShutdownAsked, Is.True);
        Assert.That(client.Completion.IsCompletedSuccessfully, Is.True);
        b.Dispose();
    }

    [Test]
    public async Task TryWrite_ReportsFalse_OnAStreamWhoseSessionClosed(CancellationToken token)
    {
        var (a, b) = HalfClosablePair.Create();
        var client = new YamuxSession(a, isInitiator: true, NoKeepAlive);
        var server = new YamuxSession(b, isInitiator: false, NoKeepAlive);
        var stream = await client.OpenStreamAsync(synWithFirstWrite: true, token);

        await client.DisposeAsync();
        await server.DisposeAsync();

        Assert.That(await stream.TryWriteAsync("late"u8.ToArray(), token), Is.False);
        Assert.ThrowsAsync<YamuxStreamResetException>(async () => await stream.WriteAsync("late"u8.ToArray(), token));
    }

    [Test]
    public async Task TryWrite_ReportsFalse_WhenTheConnectionWriteFails(CancellationToken token)
    {
        var (a, b) = HalfClosablePair.Create();
        var client = new YamuxSession(a, isInitiator: true, NoKeepAlive);
        var stream = await client.OpenStreamAsync(synWithFirstWrite: true, token);
        a.FailWrites = true;

        Assert.That(await stream.TryWriteAsync("data"u8.ToArray(), token), Is.False);
        Assert.That(client.IsClosed, Is.True, "a failed connection write ends the session");
        b.Dispose();
        await client.DisposeAsync();
    }

    [Test]
    public async Task TryOpenStream_ReturnsNull_OnAClosedOrGoingAwaySession(CancellationToken token)
    {
        var (a, b) = HalfClosablePair.Create();
        var client = new YamuxSession(a, isInitiator: true, NoKeepAlive);
        var server = new YamuxSession(b, isInitiator: false, NoKeepAlive);

        await server.GoAwayAsync(token);
        // The pong follows the go-away on the connection: once it is back, the go-away has been read.
        await client.PingAsync(token);
        Assert.That(await client.TryOpenStreamAsync(synWithFirstWrite: true, token), Is.Null);

        await client.DisposeAsync();
        await server.DisposeAsync();
        Assert.That(await client.TryOpenStreamAsync(synWithFirstWrite: true, token), Is.Null);
        Assert.ThrowsAsync<YamuxException>(async () => await client.OpenStreamAsync(synWithFirstWrite: true, token));
    }

    private static async Task<byte[]> ReadToEndOfStreamAsync(Stream stream, CancellationToken token)
    {
        using var memory = new MemoryStream();
        var buffer = new byte[256];
        int read;
        while ((read = await stream.ReadAsync(buffer, token)) > 0) memory.Write(buffer, 0, read);
        return memory.ToArray();
    }

    /// <summary>Two connected ends over pipes, each able to end its writes alone, as a TCP FIN does.</summary>
    private sealed class HalfClosablePair : Stream, IShutdownStream
    {
        private readonly PipeReader _reader;
        private readonly PipeWriter _writer;
        private readonly bool _canShutdown;
        private int _writesShutDown;

        private HalfClosablePair(PipeReader reader, PipeWriter writer, bool canShutdown)
        {
            _reader = reader;
            _writer = writer;
            _canShutdown = canShutdown;
        }

        public static (HalfClosablePair A, HalfClosablePair B) Create(bool canShutdown = true)
        {
            var options = new PipeOptions(useSynchronizationContext: false);
            var ab = new Pipe(options);
            var ba = new Pipe(options);
            return (new HalfClosablePair(ba.Reader, ab.Writer, canShutdown), new HalfClosablePair(ab.Reader, ba.Writer, canShutdown));
        }

        public bool WritesShutDown => Volatile.Read(ref _writesShutDown) != 0;
        public int ReadsCancelled;
        public bool FailWrites;
        public bool WriteFailed;

        public bool ShutdownAsked;

        public bool TryShutdownWrites()
        {
            ShutdownAsked = true;
            if (!_canShutdown) return false;
            ShutdownWrites();
            return true;
        }

        public void ShutdownWrites()
        {
            if (Interlocked.Exchange(ref _writesShutDown, 1) == 0) _writer.Complete();
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            try
            {
                var result = await _reader.ReadAsync(cancellationToken);
                var available = result.Buffer;
                if (available.IsEmpty && result.IsCompleted)
                {
                    _reader.AdvanceTo(available.End);
                    return 0;
                }
                var n = (int)Math.Min(buffer.Length, available.Length);
                available.Slice(0, n).CopyTo(buffer.Span);
                _reader.AdvanceTo(available.GetPosition(n));
                return n;
            }
            catch (Exception) when (cancellationToken.IsCancellationRequested)
            {
                // Cancelled, or ended by the dispose that followed the cancellation.
                Interlocked.Increment(ref ReadsCancelled);
                throw;
            }
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (FailWrites || WritesShutDown)
            {
                WriteFailed = true;
                throw new IOException("broken pipe");
            }
            await _writer.WriteAsync(buffer, cancellationToken);
        }

        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                ShutdownWrites();
                _reader.Complete();
            }
            base.Dispose(disposing);
        }
    }
}
