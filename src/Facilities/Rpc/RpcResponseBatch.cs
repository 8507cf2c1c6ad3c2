using System.Buffers;
using System.Diagnostics;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Rpc.Wire;

namespace P2PInference.Facilities.Rpc;

/// <summary>
/// The response frames of one streaming call that leave together: a coalescing method's items
/// (<see cref="RpcMethodOptions.CoalesceResponses"/>) held while the next is ready at once, then the
/// call's last frame, so one write (one Yamux frame, one Noise message) carries them all.
/// </summary>
internal sealed class RpcResponseBatch : IDisposable
{
    /// <summary>Past this many held bytes the batch is written without waiting for more.</summary>
    public const int MaxBytes = 32 * 1024;

    private byte[]? _buffer;
    private int _length;

    public bool IsFull => _length >= MaxBytes;

    public void Append(ResponseFrame frame)
    {
        using var encoded = RpcFrames.Encode(frame, 64 + (frame.Payload?.Length ?? 0));
        var bytes = encoded.Frame().Span;
        var needed = _length + bytes.Length;
        if (_buffer is null || needed > _buffer.Length)
        {
            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(needed, Math.Min(2 * (_buffer?.Length ?? 0), MaxBytes + bytes.Length)));
            if (_buffer is not null)
            {
                _buffer.AsSpan(0, _length).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(_buffer);
            }
            _buffer = larger;
        }
        bytes.CopyTo(_buffer.AsSpan(_length));
        _length = needed;
    }

    /// <summary>Writes what is held and then <paramref name="final"/> (if any) in one write; with <paramref name="complete"/> the FIN travels with it.</summary>
    public async ValueTask WriteAsync(YamuxStream stream, ResponseFrame? final, bool complete, CancellationToken cancellationToken)
    {
        if (final is not null) Append(final);
        if (_length == 0)
        {
            if (complete) await stream.CompleteWritesAsync(cancellationToken);
            return;
        }
        Debug.Assert(_buffer is not null);
        try
        {
            var held = _buffer.AsMemory(0, _length);
            if (complete) await stream.WriteAndCompleteAsync(held, cancellationToken);
            else await stream.WriteAsync(held, cancellationToken);
        }
        finally
        {
            // Written or not, what was held is gone: a failed write means the caller is.
            _length = 0;
        }
    }

    public void Dispose()
    {
        if (_buffer is null) return;
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = null;
    }
}
