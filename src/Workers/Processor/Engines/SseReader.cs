using System.Buffers;
using System.Text;

namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// Reads server-sent events from an untrusted stream and returns each event's <c>data</c>. Lines
/// and events are bounded before they are stored: a server that never ends a line gets a
/// <see cref="InferenceErrorKind.MalformedResponse"/>, not our memory.
/// </summary>
internal sealed class SseReader : IDisposable
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly Stream _stream;
    private readonly int _maxEventBytes;
    private readonly Action? _onBytes;
    private readonly ArrayBufferWriter<byte> _line = new();
    private readonly StringBuilder _data = new();
    private byte[] _buffer;
    private int _start;
    private int _end;
    private bool _endOfStream;

    /// <param name="onBytes">Called whenever bytes arrive (keeps an idle timeout from firing on a live stream).</param>
    public SseReader(Stream stream, int maxEventBytes, Action? onBytes = null)
    {
        _stream = stream;
        _maxEventBytes = maxEventBytes;
        _onBytes = onBytes;
        _buffer = ArrayPool<byte>.Shared.Rent(8192);
    }

    /// <summary>The next event's data (its <c>data:</c> lines joined by newlines); null at the end of the stream.</summary>
    public async ValueTask<string?> ReadEventDataAsync(CancellationToken cancellationToken)
    {
        _data.Clear();
        var hasData = false;
        while (true)
        {
            var line = await ReadLineAsync(cancellationToken);
            if (line is null) return hasData ? _data.ToString() : null;
            if (line.Length == 0)
            {
                if (hasData) return _data.ToString();
                continue;
            }
            if (line[0] == ':') continue; // a comment, often a keep-alive

            var colon = line.IndexOf(':', StringComparison.Ordinal);
            var field = colon < 0 ? line : line[..colon];
            if (field != "data") continue; // event, id, retry: not used by chat completions
            var value = colon < 0 ? string.Empty : line[(colon + 1)..];
            if (value.StartsWith(' ')) value = value[1..];
            if (_data.Length + value.Length + 1 > _maxEventBytes) throw TooLong();
            if (hasData) _data.Append('\n');
            _data.Append(value);
            hasData = true;
        }
    }

    public void Dispose()
    {
        if (_buffer.Length == 0) return;
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
    }

    private async ValueTask<string?> ReadLineAsync(CancellationToken cancellationToken)
    {
        _line.ResetWrittenCount();
        while (true)
        {
            var available = _buffer.AsSpan(_start, _end - _start);
            var newline = available.IndexOf((byte)'\n');
            if (newline >= 0)
            {
                Append(available[..newline]);
                _start += newline + 1;
                return Decode();
            }
            Append(available);
            _start = _end = 0;
            if (_endOfStream) return _line.WrittenCount > 0 ? Decode() : null;

            var read = await _stream.ReadAsync(_buffer.AsMemory(), cancellationToken);
            if (read == 0) _endOfStream = true;
            else _onBytes?.Invoke();
            _end = read;
        }
    }

    private void Append(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty) return;
        if (_line.WrittenCount + bytes.Length > _maxEventBytes) throw TooLong();
        _line.Write(bytes);
    }

    private string Decode()
    {
        var bytes = _line.WrittenSpan;
        if (!bytes.IsEmpty && bytes[^1] == (byte)'\r') bytes = bytes[..^1];
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new InferenceException(InferenceErrorKind.MalformedResponse, "The model server sent an event that is not valid UTF-8.", innerException: e);
        }
    }

    private InferenceException TooLong() =>
        new(InferenceErrorKind.MalformedResponse, $"The model server sent an event longer than {_maxEventBytes} bytes.");
}
