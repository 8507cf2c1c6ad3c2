using System.Collections.Frozen;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.Facilities.Rpc.Wire;

namespace P2PInference.Facilities.Rpc;

/// <summary>
/// RPC over a <see cref="P2PHost"/>: protocol <see cref="ProtocolId"/>, one stream per call on the
/// host's one connection per peer. Serves the methods registered with <see cref="Respond"/> and
/// calls other nodes. Disposing it stops serving (running handlers are cancelled and their callers
/// get Unavailable) and cancels its own outgoing calls; the host stays.
/// </summary>
/// <remarks>
/// Wire format: every message is uvarint-length-prefixed MessagePack (types in <c>Rpc.Wire</c>).
/// The client sends one <see cref="RequestEnvelope"/> and keeps its write side OPEN until it has
/// the last response frame: half-closing (FIN) or resetting the stream before that cancels the
/// call, and the server handler's CancellationToken fires. The server answers a unary call with
/// exactly one <see cref="ResponseFrame"/> (payload or error), a streaming call with any number of
/// payload frames and then one end or error frame; then FIN.
/// </remarks>
public sealed class RpcNode : IRpcServer, IRpcClient, IAsyncDisposable
{
    public const string ProtocolId = "/p2pinference/rpc/1.0.0";

    /// <summary>Room in a frame beyond the payload limit for the method name, ids, metadata and error text.</summary>
    internal const int FrameOverhead = 64 * 1024;

    private static readonly IReadOnlyDictionary<string, string> NoMetadata = FrozenDictionary<string, string>.Empty;

    private readonly P2PHost _host;
    private readonly RpcOptions _options;
    private readonly ILogger _logger;
    private readonly RpcServerCore _server;
    private readonly RpcTopicRouter _router;
    private readonly Action<object?> _callerLeft;
    private readonly string _requestIdPrefix;
    private long _nextRequestId;
    private int _disposed;

    public RpcNode(P2PHost host, RpcOptions? options = null, IDiscovery? discovery = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        options ??= new RpcOptions { TimeProvider = host.TimeProvider, RandomSource = host.RandomSource, Random = host.RandomSource.CreateRandom() };
        options.Validate();
        _host = host;
        _options = options;
        _logger = options.LoggerFactory.CreateLogger<RpcNode>();
        _server = new RpcServerCore(options, _logger);
        _router = new RpcTopicRouter(host.PeerId, discovery, options, _logger,
            found => host.PeerStore.AddAddresses(found.PeerId, found.Addresses));
        _requestIdPrefix = host.PeerId.ToString()[^8..];
        _callerLeft = state => _ = CancelCallerGoneAsync((CancellationTokenSource)state!);
        host.Handle(ProtocolId, ServeAsync);
    }

    public PeerId PeerId => _host.PeerId;

    public RpcOptions Options => _options;

    public IReadOnlySet<PeerId>? AllowedPeers
    {
        get => _server.AllowedPeers;
        set => _server.AllowedPeers = value;
    }

    public void Respond(string method, RpcHandler handler, RpcMethodOptions? options = null) => _server.Respond(method, handler, options);

    public void RespondStreaming(string method, RpcStreamingHandler handler, RpcMethodOptions? options = null) =>
        _server.RespondStreaming(method, handler, options);

    public bool Unrespond(string method) => _server.Unrespond(method);

    public async Task<byte[]> RequestAsync(PeerId peer, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options, CancellationToken cancellationToken)
    {
        var (envelope, deadline) = Prepare(peer, method, request, options, streaming: false);
        var call = new RpcOutboundCall(_host, _options, peer, deadline, _server.Stopping, cancellationToken);
        await using (call)
        {
            using (envelope) await call.StartAsync(envelope.Frame(), IsBulk(method) ? _logger : null);
            var frame = await call.ReadFrameAsync();
            if (frame.Kind != ResponseFrameKind.Payload)
                throw new RpcException(RpcStatusCode.Internal, $"peer {peer} ended a unary call without a response");
            call.MarkFinished();
            return PayloadArray(frame);
        }
    }

    public async IAsyncEnumerable<byte[]> RequestStreamAsync(PeerId peer, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var (envelope, deadline) = Prepare(peer, method, request, options, streaming: true);
        var call = new RpcOutboundCall(_host, _options, peer, deadline, _server.Stopping, cancellationToken);
        await using (call)
        {
            using (envelope) await call.StartAsync(envelope.Frame(), IsBulk(method) ? _logger : null);
            while (true)
            {
                var frame = await call.ReadFrameAsync();
                if (frame.Kind == ResponseFrameKind.End) yield break;
                yield return PayloadArray(frame);
            }
        }
    }

    public Task<byte[]> RequestTopicAsync(string topic, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options, CancellationToken cancellationToken) =>
        _router.RequestAsync(topic, (peer, o, ct) => RequestAsync(peer, method, request, o, ct), options, cancellationToken);

    public IAsyncEnumerable<byte[]> RequestTopicStreamAsync(string topic, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options,
        CancellationToken cancellationToken) =>
        _router.RequestStreamAsync(topic, (peer, o, ct) => RequestStreamAsync(peer, method, request, o, ct), options, cancellationToken);

    public Task<IReadOnlyList<RpcPeerResult>> RequestAllAsync(string topic, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options,
        CancellationToken cancellationToken) =>
        _router.RequestAllAsync(topic, (peer, o, ct) => RequestAsync(peer, method, request, o, ct), options, cancellationToken);

    /// <summary>The decoder copied the payload into an array of its own: hand that array out instead of a second copy.</summary>
    private static byte[] PayloadArray(ResponseFrame frame)
    {
        var payload = frame.Payload.GetValueOrDefault();
        return MemoryMarshal.TryGetArray(payload, out var segment) && segment.Offset == 0 && segment.Count == segment.Array!.Length
            ? segment.Array
            : payload.ToArray();
    }

    /// <summary>Checks a call before anything goes on the wire (size, deadline, arguments) and encodes its envelope frame.</summary>
    private (PrefixedFrameWriter Envelope, DateTimeOffset? Deadline) Prepare(PeerId peer, string method, ReadOnlyMemory<byte> request,
        RpcCallOptions? options, bool streaming)
    {
        ArgumentNullException.ThrowIfNull(peer);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        options ??= RpcCallOptions.Default;
        var deadline = RpcCallChecks.Check(_options, method, request, options);
        long timeoutMs = 0;
        if (deadline is { } d)
            timeoutMs = Math.Max(1, (long)Math.Ceiling((d - _options.TimeProvider.GetUtcNow()).TotalMilliseconds));
        var envelope = new RequestEnvelope
        {
            Method = method,
            Payload = request,
            TimeoutMs = timeoutMs,
            TraceId = options.TraceId ?? RpcCallChecks.NewTraceId(_options.RandomSource),
            RequestId = options.RequestId ?? NextRequestId(),
            Streaming = streaming,
        };
        if (options.Metadata is { } metadata)
            foreach (var (key, value) in metadata) envelope.Metadata[key] = value;
        var frame = RpcFrames.Encode(envelope, request.Length + 256);
        if (frame.BodyLength > _options.MaxMessageSize + FrameOverhead)
        {
            frame.Dispose();
            throw new RpcException(RpcStatusCode.ResourceExhausted, "request metadata is too large; it was not sent");
        }
        return (frame, deadline);
    }

    private bool IsBulk(string method) => _options.BulkMethods is { Count: > 0 } bulk && bulk.Contains(method);

    private string NextRequestId() => $"{_requestIdPrefix}-{Interlocked.Increment(ref _nextRequestId)}";

    private async Task ServeAsync(StreamContext context, CancellationToken hostToken)
    {
        var stream = context.Stream;
        var caller = context.RemotePeer;
        if (_server.CheckCaller(caller) is { } denied)
        {
            await AnswerErrorAsync(stream, denied, hostToken);
            return;
        }
        if (!_server.TryEnter(caller))
        {
            await AnswerErrorAsync(stream, _server.TooManyCalls(), hostToken);
            return;
        }
        // The slot is given back before the call's last frame goes out: a caller that sends its next
        // call as soon as it has the answer must find the slot free, not race our finally.
        var left = 0;
        long reserved = 0;
        void Leave()
        {
            if (Interlocked.Exchange(ref left, 1) != 0) return;
            _server.Exit(caller);
            _server.ReleaseBytes(caller, Interlocked.Exchange(ref reserved, 0));
        }
        try
        {
            var envelope = await ReadEnvelopeAsync(stream, caller, bytes => reserved = bytes, hostToken);
            if (envelope is null) return;
            // Every request that reached this node, before any check of it: what an operator (or a test
            // of who may be sent what) reads to know which peers called which methods.
            if (_logger.IsEnabled(LogLevel.Debug))
                _logger.LogDebug("rpc request {Method} from {Peer}: {PayloadBytes} payload bytes, metadata [{MetadataKeys}]", envelope.Method, caller,
                    envelope.Payload.Length, string.Join(", ", envelope.Metadata.Keys));
            await ServeCallAsync(stream, caller, context.Connection, envelope, hostToken, Leave);
        }
        finally
        {
            Leave();
        }
    }

    /// <summary>The request, or null when the call is over already (answered with an error, or the caller left).</summary>
    /// <param name="reserved">Told how many bytes were counted against the caller's in-flight budget, for the caller to give back when the call ends.</param>
    private async Task<RequestEnvelope?> ReadEnvelopeAsync(YamuxStream stream, PeerId caller, Action<long> reserved, CancellationToken hostToken)
    {
        // The envelope normally arrived with the stream's opening (the caller negotiates lazily): what
        // is here already is read without a timer, which is armed only when a read has to wait.
        CancellationTokenSource? timeout = null;
        CancellationTokenSource? linked = null;
        CancellationToken Wait(int needed)
        {
            if (linked is not null || stream.BufferedCount >= needed) return linked?.Token ?? hostToken;
            timeout = new CancellationTokenSource(_options.RequestReadTimeout, _options.TimeProvider);
            linked = CancellationTokenSource.CreateLinkedTokenSource(hostToken, timeout.Token);
            return linked.Token;
        }
        RpcException error;
        try
        {
            var length = await LengthPrefixedMessage.ReadLengthAsync(stream, _options.MaxMessageSize + FrameOverhead, Wait(Varint.MaxLength));
            if (length is null) return null;
            // Counted from the announced length, before the body is read: what a peer may make us hold is bounded up front.
            if (!_server.TryReserveBytes(caller, length.Value))
            {
                error = _server.TooManyBytes(length.Value);
                _logger.LogDebug("rejecting rpc request from {Peer}: {Message}", caller, error.Message);
                await AnswerErrorAsync(stream, error, hostToken);
                return null;
            }
            reserved(length.Value);
            var envelope = await RpcFrames.ReadBodyAsync<RequestEnvelope>(stream, length.Value, Wait(length.Value));
            if (envelope.Payload.Length > _options.MaxMessageSize) error = _server.TooLarge("request", envelope.Payload.Length).AsUndelivered();
            else if (envelope.Method.Length == 0) error = RpcException.Undelivered(RpcStatusCode.InvalidArgument, "request envelope names no method");
            else if (envelope.TimeoutMs < 0) error = RpcException.Undelivered(RpcStatusCode.InvalidArgument, "negative timeout in request envelope");
            // Past it no timer can wait (it would throw, and the stream be reset with no answer at all).
            else if (envelope.TimeoutMs > (long)RpcCallOptions.MaxTimeout.TotalMilliseconds) error = RpcServerCore.TimeoutTooLong(envelope.TimeoutMs);
            else return envelope;
        }
        catch (MessageTooLargeException e)
        {
            error = _server.TooLarge("request", (long)Math.Min(e.Length, long.MaxValue)).AsUndelivered();
        }
        catch (MalformedMessageException e)
        {
            error = RpcException.Undelivered(RpcStatusCode.InvalidArgument, $"malformed request envelope: {e.Message}");
        }
        catch (OperationCanceledException) when (timeout?.IsCancellationRequested == true && !hostToken.IsCancellationRequested)
        {
            error = RpcException.Undelivered(RpcStatusCode.DeadlineExceeded, "the request did not arrive in time");
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException)
        {
            _logger.LogDebug(e, "rpc request from {Peer} did not arrive", caller);
            return null;
        }
        finally
        {
            linked?.Dispose();
            timeout?.Dispose();
        }
        _logger.LogDebug("rejecting rpc request from {Peer}: {Code} {Message}", caller, error.Code, error.Message);
        await AnswerErrorAsync(stream, error, hostToken);
        return null;
    }

    private async Task ServeCallAsync(YamuxStream stream, PeerId caller, PeerConnection connection, RequestEnvelope envelope, CancellationToken hostToken,
        Action leave)
    {
        var call = new RpcInvocation(caller, envelope.Method, envelope.Payload,
            envelope.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(envelope.TimeoutMs) : null,
            envelope.RequestId, envelope.TraceId,
            envelope.Metadata.Count == 0 ? NoMetadata : envelope.Metadata.ToFrozenDictionary(StringComparer.Ordinal),
            envelope.Streaming, connection.RemoteAddress, connection.Origin);
        using var callerGone = new CancellationTokenSource();
        using var batch = new RpcResponseBatch();
        using var hostStop = hostToken.Register(static s => ((CancellationTokenSource)s!).Cancel(), callerGone);
        // The caller keeps its write side open until it has the answer, so anything more from it (FIN,
        // RST, stray bytes) or the connection's end means it gave up: the handler is cancelled. The
        // stream tells us so; no read waits for it, and a call that ends normally costs nothing here.
        if (!stream.TryWatchInbound(_callerLeft, callerGone)) callerGone.Cancel();
        try
        {
            // A unary answer is the last frame: its FIN travels with it, and the handler is done, so the slot goes back first.
            var error = await _server.InvokeAsync(call,
                (payload, hold, ct) =>
                {
                    if (!call.Streaming) leave();
                    if (!hold) return WriteResponseAsync(stream, payload, !call.Streaming, callerGone, ct);
                    batch.Append(new ResponseFrame { Payload = payload });
                    return batch.IsFull ? WriteHeldAsync(stream, batch, callerGone, ct) : default;
                },
                callerGone.Token,
                ct => WriteHeldAsync(stream, batch, callerGone, ct));
            if (callerGone.IsCancellationRequested && !hostToken.IsCancellationRequested) return;
            leave();
            // Held items go first, in the same write as the call's last frame.
            if (error is not null) await WriteFinalAsync(stream, batch, new ResponseFrame { Error = ToWire(error) }, hostToken);
            else if (call.Streaming) await WriteFinalAsync(stream, batch, new ResponseFrame { End = true }, hostToken);
            else await CompleteQuietlyAsync(stream, hostToken);
        }
        finally
        {
            stream.StopWatchingInbound();
        }
    }

    /// <summary>
    /// A response the stream refuses (the caller reset it, the connection died) means the caller is
    /// gone, whichever of this write and the watcher's read learns it first: the handler's token fires
    /// before the failure stops it, so what it started with that token stops too.
    /// </summary>
    private static async ValueTask WriteResponseAsync(YamuxStream stream, ReadOnlyMemory<byte> payload, bool complete, CancellationTokenSource callerGone,
        CancellationToken cancellationToken)
    {
        try
        {
            await RpcFrames.WriteAsync(stream, new ResponseFrame { Payload = payload }, complete, cancellationToken);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            callerGone.Cancel();
            throw;
        }
    }

    /// <summary>What <paramref name="batch"/> holds, in one write; a refused write means the caller is gone, as in <see cref="WriteResponseAsync"/>.</summary>
    private static async ValueTask WriteHeldAsync(YamuxStream stream, RpcResponseBatch batch, CancellationTokenSource callerGone, CancellationToken cancellationToken)
    {
        try
        {
            await batch.WriteAsync(stream, null, complete: false, cancellationToken);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            callerGone.Cancel();
            throw;
        }
    }

    /// <summary>
    /// Cancels a handler whose caller left, off the thread that learned it (the session's read loop,
    /// which every stream of the connection waits on): what the handler registered on its token runs
    /// as the rest of its work does, not inside the connection's reader.
    /// </summary>
    private async Task CancelCallerGoneAsync(CancellationTokenSource callerGone)
    {
        await Task.Yield();
        try
        {
            callerGone.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The call ended meanwhile: nothing is left to cancel.
        }
        catch (AggregateException e)
        {
            _logger.LogDebug(e, "a handler's cancellation callback failed");
        }
    }

    private Task AnswerErrorAsync(YamuxStream stream, RpcException error, CancellationToken cancellationToken) =>
        WriteFinalAsync(stream, new ResponseFrame { Error = ToWire(error) }, cancellationToken);

    private Task WriteFinalAsync(YamuxStream stream, ResponseFrame frame, CancellationToken cancellationToken) =>
        WriteFinalAsync(stream, null, frame, cancellationToken);

    /// <summary>The call's last frame with its FIN, after what <paramref name="batch"/> holds, in one write.</summary>
    private async Task WriteFinalAsync(YamuxStream stream, RpcResponseBatch? batch, ResponseFrame frame, CancellationToken cancellationToken)
    {
        try
        {
            if (batch is null) await RpcFrames.WriteAsync(stream, frame, complete: true, cancellationToken);
            else await batch.WriteAsync(stream, frame, complete: true, cancellationToken);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException)
        {
            _logger.LogDebug(e, "could not send the rpc answer");
        }
    }

    private static async Task CompleteQuietlyAsync(YamuxStream stream, CancellationToken cancellationToken)
    {
        try
        {
            await stream.CompleteWritesAsync(cancellationToken);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException)
        {
        }
    }

    internal static RpcError ToWire(RpcException error)
    {
        var wire = new RpcError { Code = (int)error.Code, Message = error.Message };
        foreach (var (key, value) in error.Details) wire.Details[key] = value;
        return wire;
    }

    internal static RpcException FromWire(RpcError error)
    {
        var code = Enum.IsDefined((RpcStatusCode)error.Code) ? (RpcStatusCode)error.Code : RpcStatusCode.Internal;
        return new RpcException(code, error.Message, error.Details.Count == 0 ? null : error.Details.ToFrozenDictionary(StringComparer.Ordinal));
    }

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return ValueTask.CompletedTask;
        _host.Unhandle(ProtocolId);
        _server.Stop();
        return ValueTask.CompletedTask;
    }
}
