using System.Buffers;
using P2PInference.Facilities.Net.Yamux;

namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>
/// The relay's splice of a source's hop stream and a target's stop stream: bytes are copied each way
/// through a buffer of its own (Yamux's window holds the sender back beyond it), counted against the
/// data limit per direction, and the circuit is reset at the limit or when the duration is up. A
/// half-close is passed on as one, so each end reads its peer's end of stream.
/// </summary>
internal sealed class RelayCircuit(YamuxStream source, YamuxStream target, RelayLimit limit, int bufferSize, TimeProvider time)
{
    private long _forwarded;
    private int _dataLimitHit;

    public long BytesForwarded => Interlocked.Read(ref _forwarded);

    public async Task<RelayCircuitEnd> RunAsync(CancellationToken cancellationToken)
    {
        using var duration = limit.Duration is { } d ? new CancellationTokenSource(d, time) : new CancellationTokenSource();
        using var circuit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, duration.Token);
        var up = PumpAsync(source, target, circuit);
        var down = PumpAsync(target, source, circuit);
        var clean = await up & await down;
        if (clean) return RelayCircuitEnd.Closed;
        source.Reset();
        target.Reset();
        if (Volatile.Read(ref _dataLimitHit) != 0) return RelayCircuitEnd.DataLimit;
        if (duration.IsCancellationRequested) return RelayCircuitEnd.DurationLimit;
        return cancellationToken.IsCancellationRequested ? RelayCircuitEnd.Stopped : RelayCircuitEnd.Failed;
    }

    /// <summary>True when <paramref name="from"/> ended cleanly and the end was passed on.</summary>
    private async Task<bool> PumpAsync(YamuxStream from, YamuxStream to, CancellationTokenSource circuit)
    {
        await Task.Yield();
        var buffer = ArrayPool<byte>.Shared.Rent(bufferSize);
        long sent = 0;
        try
        {
            while (true)
            {
                var read = await from.ReadAsync(buffer.AsMemory(0, bufferSize), circuit.Token);
                if (read == 0)
                {
                    await to.CompleteWritesAsync(circuit.Token);
                    return true;
                }
                if (limit.Data is { } data && sent + read > data)
                {
                    // What fits goes through; the rest would be past the limit the ends were promised.
                    var fits = (int)(data - sent);
                    if (fits > 0)
                    {
                        await to.WriteAsync(buffer.AsMemory(0, fits), circuit.Token);
                        Interlocked.Add(ref _forwarded, fits);
                    }
                    Volatile.Write(ref _dataLimitHit, 1);
                    circuit.Cancel();
                    return false;
                }
                await to.WriteAsync(buffer.AsMemory(0, read), circuit.Token);
                sent += read;
                Interlocked.Add(ref _forwarded, read);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // The other direction is waiting on a read that will not end by itself.
            if (!circuit.IsCancellationRequested) circuit.Cancel();
            return false;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
