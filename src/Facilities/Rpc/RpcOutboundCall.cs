using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Rpc.Wire;

namespace P2PInference.Facilities.Rpc;

/// <summary>
/// The client side of one call on its own stream: open, send the envelope, read frames. Every
/// failure leaves here translated (see <see cref="Translate"/>); disposing before the call ended
/// resets the stream, which cancels the handler on the server.
/// </summary>
internal sealed class RpcOutboundCall : IAsyncDisposable
{
    private static readonly Action<object?> s_cancel = static s => ((CancellationTokenSource)s!).Cancel();

    private readonly P2PHost _host;
    private readonly RpcOptions _options;
    private readonly PeerId _peer;
    private readonly CancellationToken _callerToken;
    private readonly CancellationToken _nodeStopping;

    /// <summary>
    /// The call's one token: fires at the deadline (its own timer) or when the caller's token or the
    /// node's stop fires, which are registered on it rather than linked through a second source.
    /// </summary>
    private readonly CancellationTokenSource _linked;
    private readonly bool _hasDeadline;
    private readonly CancellationTokenRegistration _callerRegistration;
    private readonly CancellationTokenRegistration _stoppingRegistration;
    private YamuxStream? _stream;
    private bool _finished;
    private bool _answerPending;

    public RpcOutboundCall(P2PHost host, RpcOptions options, PeerId peer, DateTimeOffset? deadline, CancellationToken nodeStopping,
        CancellationToken callerToken)
    {
        _host = host;
        _options = options;
        _peer = peer;
        _callerToken = callerToken;
        _nodeStopping = nodeStopping;
        _hasDeadline = deadline is not null;
        _linked = deadline is { } d
            ? new CancellationTokenSource(Max(d - options.TimeProvider.GetUtcNow(), TimeSpan.Zero), options.TimeProvider)
            : new CancellationTokenSource();
        _callerRegistration = callerToken.UnsafeRegister(s_cancel, _linked);
        _stoppingRegistration = nodeStopping.UnsafeRegister(s_cancel, _linked);
    }

    /// <param name="envelope">The request envelope's frame, prefix included.</param>
    /// <param name="bulkLogger">Set for a bulk call (<see cref="RpcOptions.BulkMethods"/>): it first waits a while for a connection that is not limited.</param>
    public async Task StartAsync(ReadOnlyMemory<byte> envelope, Microsoft.Extensions.Logging.ILogger? bulkLogger = null)
    {
        try
        {
            _linked.Token.ThrowIfCancellationRequested();
            if (bulkLogger is not null) await DirectConnectionWait.WaitAsync(_host, _peer, _options.DirectConnectionWait, bulkLogger, _linked.Token);
            // Lazy negotiation: the proposal and the envelope share one write, and the answer to the
            // proposal is read with the response, so a call costs one round trip instead of two.
            // The write side stays open: closing it before the answer would cancel the call (see RpcNode).
            _stream = await _host.OpenStreamLazyAsync(_peer, RpcNode.ProtocolId, envelope, _linked.Token);
            _answerPending = true;
        }
        catch (Exception e) when (Translate(e) is { } translated)
        {
            // No stream means no envelope on the far side: the dial, the stream's opening or its one
            // write failed, and the server reads the whole envelope before it invokes anything.
            throw translated is RpcException rpc ? rpc.AsUndelivered() : translated;
        }
    }

    /// <summary>The next frame; a payload larger than the limit fails the call with ResourceExhausted.</summary>
    public async Task<ResponseFrame> ReadFrameAsync()
    {
        try
        {
            if (_answerPending)
            {
                try
                {
                    await _host.ReadLazyAnswerAsync(_stream!, RpcNode.ProtocolId, _linked.Token);
                }
                catch (MultistreamException e) when (e.Reason == MultistreamFailure.NoProtocolSupported)
                {
                    // "na": the listener serves no RPC (or no longer: a stopping node unregisters it first), so it read no envelope.
                    throw RpcException.Undelivered(RpcStatusCode.Unavailable, $"peer {_peer} does not serve RPC: {e.Message}", e);
                }
                _answerPending = false;
            }
            var frame = await RpcFrames.ReadAsync<ResponseFrame>(_stream!, _options.MaxMessageSize + RpcNode.FrameOverhead, _linked.Token)
                ?? throw new RpcException(RpcStatusCode.Unavailable, $"peer {_peer} closed the call without answering");
            switch (frame.Kind)
            {
                case ResponseFrameKind.Payload when frame.Payload!.Value.Length > _options.MaxMessageSize:
                    throw new RpcException(RpcStatusCode.ResourceExhausted,
                        $"response of {frame.Payload.Value.Length} bytes exceeds the limit of {_options.MaxMessageSize} bytes");
                case ResponseFrameKind.Payload:
                    return frame;
                case ResponseFrameKind.Error:
                    _finished = true;
                    throw RpcNode.FromWire(frame.Error!);
                case ResponseFrameKind.End:
                    _finished = true;
                    return frame;
                default:
                    throw new RpcProtocolException("a response frame must carry exactly one of payload, error or end");
            }
        }
        catch (Exception e) when (Translate(e) is { } translated)
        {
            throw translated;
        }
    }

    /// <summary>The call got its answer: the stream closes gracefully instead of being reset.</summary>
    public void MarkFinished() => _finished = true;

    /// <summary>Maps a failure to what the caller sees; null for bugs, which propagate as they are.</summary>
    private Exception? Translate(Exception e)
    {
        if (_callerToken.IsCancellationRequested) return e as OperationCanceledException ?? new OperationCanceledException(_callerToken);
        // Neither the caller nor the node cancelled the call's token: its deadline timer did.
        if (_hasDeadline && _linked.IsCancellationRequested && !_nodeStopping.IsCancellationRequested)
            return new RpcException(RpcStatusCode.DeadlineExceeded, $"no answer from {_peer} before the deadline", innerException: e);
        if (_nodeStopping.IsCancellationRequested) return new RpcException(RpcStatusCode.Cancelled, "the RPC node is stopping", innerException: e);
        return e switch
        {
            RpcException => e,
            MessageTooLargeException tooLarge => new RpcException(RpcStatusCode.ResourceExhausted,
                $"response frame of {tooLarge.Length} bytes exceeds the limit of {_options.MaxMessageSize} bytes", innerException: e),
            MalformedMessageException or RpcProtocolException => new RpcException(RpcStatusCode.Internal,
                $"peer {_peer} broke the RPC protocol: {e.Message}", innerException: e),
            MultistreamException => new RpcException(RpcStatusCode.Unavailable, $"peer {_peer} does not serve RPC: {e.Message}", innerException: e),
            IOException or ObjectDisposedException or OperationCanceledException => new RpcException(RpcStatusCode.Unavailable,
                $"peer {_peer} unreachable: {e.Message}", innerException: e),
            _ => null,
        };
    }

    public async ValueTask DisposeAsync()
    {
        if (_stream is { } stream)
        {
            if (_finished) await stream.DisposeAsync();
            else stream.Reset();
        }
        _callerRegistration.Dispose();
        _stoppingRegistration.Dispose();
        _linked.Dispose();
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
