using System.Buffers;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Threading;

namespace P2PInference.Facilities.Net.Protocols.Ping;

/// <summary>
/// ping (<c>/ipfs/ping/1.0.0</c>): the dialer writes 32 random bytes, the listener echoes them; the
/// dialer may repeat on the same stream and closes its write side when done.
/// </summary>
public static class PingProtocol
{
    public const string ProtocolId = "/ipfs/ping/1.0.0";
    public const int PayloadSize = 32;

    /// <summary>Listener side: echoes payloads until the dialer ends the stream; no time limit.</summary>
    /// <exception cref="PingException">The stream ended inside a payload.</exception>
    public static Task HandleAsync(Stream stream, CancellationToken cancellationToken) =>
        HandleAsync(stream, Timeout.InfiniteTimeSpan, TimeProvider.System, cancellationToken);

    /// <summary>
    /// Listener side: echoes payloads until the dialer ends the stream, waiting at most
    /// <paramref name="idleTimeout"/> for each payload and for its echo to be written.
    /// </summary>
    /// <exception cref="PingException">The stream ended inside a payload, or the dialer stalled past <paramref name="idleTimeout"/>.</exception>
    public static async Task HandleAsync(Stream stream, TimeSpan idleTimeout, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(timeProvider);
        var buffer = ArrayPool<byte>.Shared.Rent(PayloadSize);
        try
        {
            var payload = buffer.AsMemory(0, PayloadSize);
            while (true)
            {
                using var idle = new CancellationTokenSource(idleTimeout, timeProvider);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, idle.Token);
                try
                {
                    var read = await stream.ReadAtLeastOnContextAsync(payload, PayloadSize, throwOnEndOfStream: false, linked.Token);
                    if (read == 0) return;
                    if (read < PayloadSize)
                        throw new PingException($"the stream ended after {read} of {PayloadSize} payload bytes");
                    await stream.WriteAsync(payload, linked.Token);
                    await stream.FlushAsync(linked.Token);
                }
                catch (OperationCanceledException e) when (idle.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                {
                    throw new PingException($"the dialer stalled for {idleTimeout}", e);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Dialer side: one round trip. Returns the time from writing the payload to reading its echo,
    /// as measured by <paramref name="timeProvider"/>. Can be called again on the same stream.
    /// </summary>
    /// <exception cref="PingException">The echo differs from the payload, or the stream ended first.</exception>
    public static Task<TimeSpan> PingAsync(Stream stream, TimeProvider timeProvider, CancellationToken cancellationToken) =>
        PingAsync(stream, timeProvider, SystemRandomSource.Instance, cancellationToken);

    /// <summary>Dialer side, with the payload drawn from <paramref name="randomSource"/> (the host's).</summary>
    /// <inheritdoc cref="PingAsync(Stream, TimeProvider, CancellationToken)"/>
    public static async Task<TimeSpan> PingAsync(Stream stream, TimeProvider timeProvider, IRandomSource randomSource, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(randomSource);
        var buffer = ArrayPool<byte>.Shared.Rent(2 * PayloadSize);
        try
        {
            var sent = buffer.AsMemory(0, PayloadSize);
            var echoed = buffer.AsMemory(PayloadSize, PayloadSize);
            randomSource.Fill(sent.Span);
            var start = timeProvider.GetTimestamp();
            await stream.WriteAsync(sent, cancellationToken);
            await stream.FlushAsync(cancellationToken);
            var read = await stream.ReadAtLeastOnContextAsync(echoed, PayloadSize, throwOnEndOfStream: false, cancellationToken);
            var elapsed = timeProvider.GetElapsedTime(start);
            if (read < PayloadSize)
                throw new PingException($"the stream ended after {read} of {PayloadSize} echoed bytes");
            if (!sent.Span.SequenceEqual(echoed.Span))
                throw new PingException("the echoed payload differs from the one sent");
            return elapsed;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
