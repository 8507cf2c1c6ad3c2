using System.Text;
using P2PInference.TestKit;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.Unit.Engines;

[CancelAfter(10000)]
public sealed class SseReaderTests
{
    private static async Task<List<string>> ReadAllAsync(Stream stream, int maxEventBytes = 4096)
    {
        using var reader = new SseReader(stream, maxEventBytes);
        var events = new List<string>();
        while (await reader.ReadEventDataAsync(CancellationToken.None) is { } data) events.Add(data);
        return events;
    }

    private static MemoryStream Bytes(string text) => new(System.Text.Encoding.UTF8.GetBytes(text));

    [Test]
    public async Task Read_ReturnsEachEventsData_SkippingCommentsAndOtherFields()
    {
        var events = await ReadAllAsync(Bytes(": keep-alive\n\nevent: message\nid: 1\ndata: {\"a\":1}\n\ndata:no-space\n\ndata: [DONE]\n\n"));

        Assert.That(events, Is.EqualTo(new[] { "{\"a\":1}", "no-space", "[DONE]" }));
    }

    [Test]
    public async Task Read_JoinsMultiLineData_AndAcceptsCrLf()
    {
        var events = await ReadAllAsync(Bytes("data: one\r\ndata: two\r\n\r\ndata: three\r\n\r\n"));

        Assert.That(events, Is.EqualTo(new[] { "one\ntwo", "three" }));
    }

    [Test]
    public async Task Read_GivesTheSameEvents_WhenBytesArriveOneAtATime()
    {
        var text = "data: {\"x\":\"héllo ✓\"}\r\n\r\ndata: [DONE]\n\n";

        var events = await ReadAllAsync(new TrickleStream(System.Text.Encoding.UTF8.GetBytes(text)));

        Assert.That(events, Is.EqualTo(new[] { "{\"x\":\"héllo ✓\"}", "[DONE]" }));
    }

    [Test]
    public async Task Read_ReturnsALastEventWithoutItsBlankLine_ThenEnds()
    {
        Assert.That(await ReadAllAsync(Bytes("data: last")), Is.EqualTo(new[] { "last" }));
        Assert.That(await ReadAllAsync(Bytes("")), Is.Empty);
        Assert.That(await ReadAllAsync(Bytes("\n\n\n: only comments\n")), Is.Empty);
    }

    [Test]
    public void Read_ThrowsMalformedResponse_ForALineThatNeverEnds_WithoutBufferingIt()
    {
        var endless = new EndlessStream((byte)'a');

        var error = Assert.ThrowsAsync<InferenceException>(() => ReadAllAsync(endless, maxEventBytes: 64 * 1024));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.MalformedResponse));
        Assert.That(endless.BytesRead, Is.LessThan(128 * 1024), "stopped soon after the bound");
    }

    [Test]
    public void Read_ThrowsMalformedResponse_ForAnEventOfManyShortLinesPastTheBound()
    {
        var text = string.Concat(Enumerable.Repeat("data: 0123456789\n", 1000)) + "\n";

        var error = Assert.ThrowsAsync<InferenceException>(() => ReadAllAsync(Bytes(text), maxEventBytes: 4096));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.MalformedResponse));
    }

    [Test]
    public void Read_ThrowsMalformedResponse_ForInvalidUtf8()
    {
        var bytes = new byte[] { (byte)'d', (byte)'a', (byte)'t', (byte)'a', (byte)':', 0xFF, 0xFE, (byte)'\n', (byte)'\n' };

        var error = Assert.ThrowsAsync<InferenceException>(() => ReadAllAsync(new MemoryStream(bytes)));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.MalformedResponse));
    }

    [Test]
    public async Task Read_EndsOrThrowsTyped_ForRandomBytes()
    {
        var random = TestSeed.CreateRandom();
        for (var round = 0; round < 200; round++)
        {
            var bytes = new byte[random.Next(0, 2048)];
            random.NextBytes(bytes);
            // Sprinkle line ends and field names so the parser's branches are reached.
            for (var i = 0; i < bytes.Length; i += random.Next(1, 40)) bytes[i] = (byte)"\n\r:d"[random.Next(4)];
            try
            {
                var events = await ReadAllAsync(new MemoryStream(bytes), maxEventBytes: 512);
                Assert.That(events.All(e => e.Length <= 512), Is.True);
            }
            catch (InferenceException e)
            {
                Assert.That(e.Kind, Is.EqualTo(InferenceErrorKind.MalformedResponse));
            }
        }
    }

    /// <summary>Hands out one byte per read, like a slow network.</summary>
    private sealed class TrickleStream(byte[] data) : Stream
    {
        private int _position;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (_position >= data.Length || count == 0) return 0;
            buffer[offset] = data[_position++];
            return 1;
        }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>Never ends: a hostile server.</summary>
    private sealed class EndlessStream(byte value) : Stream
    {
        public long BytesRead { get; private set; }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            buffer.AsSpan(offset, count).Fill(value);
            BytesRead += count;
            return count;
        }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
