using System.Buffers;

namespace P2PInference.Facilities.Encoding;

/// <summary>
/// Builds one uvarint-length-prefixed frame in a pooled buffer: the body is serialized behind room
/// kept for the prefix, and the prefix is written in front of it once the length is known, so the
/// frame goes out with one write and without copying the body.
/// </summary>
internal sealed class PrefixedFrameWriter : IBufferWriter<byte>, IDisposable
{
    /// <summary>The varint of any int length fits in five bytes.</summary>
    private const int PrefixRoom = 5;

    private byte[] _buffer;
    private int _written = PrefixRoom;

    public PrefixedFrameWriter(int sizeHint = 256) => _buffer = ArrayPool<byte>.Shared.Rent(PrefixRoom + Math.Max(sizeHint, 16));

    public int BodyLength => _written - PrefixRoom;

    public void Advance(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count > _buffer.Length - _written) throw new InvalidOperationException("advanced past the buffer");
        _written += count;
    }

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsMemory(_written);
    }

    public Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsSpan(_written);
    }

    /// <summary>The whole frame, prefix included; valid until this writer is disposed.</summary>
    public ReadOnlyMemory<byte> Frame()
    {
        var length = (ulong)BodyLength;
        var start = PrefixRoom - Varint.GetLength(length);
        Varint.Write(_buffer.AsSpan(start), length);
        return _buffer.AsMemory(start, _written - start);
    }

    private void Ensure(int sizeHint)
    {
        sizeHint = Math.Max(sizeHint, 1);
        if (_buffer.Length - _written >= sizeHint) return;
        var larger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, _written + sizeHint));
        _buffer.AsSpan(0, _written).CopyTo(larger);
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = larger;
    }

    public void Dispose()
    {
        if (_buffer.Length == 0) return;
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
    }
}
