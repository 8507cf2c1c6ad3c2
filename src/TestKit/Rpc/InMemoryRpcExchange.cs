using System.Threading.Channels;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;

namespace P2PInference.TestKit.Rpc;

/// <summary>
/// One call on the twin: the request crosses the caller→server link, the server core runs it, and
/// each response frame crosses back. Disposing it before the call ended cancels the handler, as a
/// stream reset does on the real stack.
/// </summary>
internal sealed class InMemoryRpcExchange : IAsyncDisposable
{
    private readonly InMemoryRpcNetwork _network;
    private readonly InMemoryRpcNode _client;
    private readonly PeerId _target;
    private readonly RpcInvocation _call;
    private readonly CancellationToken _callerToken;
    private readonly CancellationTokenSource? _deadline;
    private readonly CancellationTokenSource _linked;
    private readonly CancellationTokenSource _callerGone = new();
    private readonly Channel<Frame> _frames = Channel.CreateUnbounded<Frame>(new UnboundedChannelOptions { SingleReader = true });
    private readonly InMemoryRpcNode? _server;
    private Task _serverSide = Task.CompletedTask;
    private int _terminal;

    public InMemoryRpcExchange(InMemoryRpcNetwork network, InMemoryRpcNode client, PeerId target, RpcInvocation call, DateTimeOffset? deadline,
        CancellationToken callerToken)
    {
        _network = network;
        _client = client;
        _target = target;
        _call = call;
        _callerToken = callerToken;
        _server = network.Find(target);
        if (deadline is { } d)
        {
            var remaining = d - network.TimeProvider.GetUtcNow();
            _deadline = new CancellationTokenSource(remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero, network.TimeProvider);
        }
        _linked = CancellationTokenSource.CreateLinkedTokenSource(callerToken, client.Gone, _server?.Gone ?? default, _deadline?.Token ?? default);
    }

    /// <summary>A payload, or the end of a stream (both null), or an error.</summary>
    public sealed record Frame(byte[]? Payload, RpcException? Error);

    /// <summary>
    /// Starts the server side on the caller's context (in a simulation, the executor's) as a task the
    /// exchange owns: disposing waits for it, so no handler outlives its call unobserved.
    /// </summary>
    public void Start() => _serverSide = RunServerSideAsync();

    public async Task<Frame> ReadAsync()
    {
        Frame frame;
        try
        {
            frame = await _frames.Reader.ReadAsync(_linked.Token);
        }
        catch (OperationCanceledException) when (!_callerToken.IsCancellationRequested && _frames.Reader.TryRead(out var arrived))
        {
            // What arrived before the server went away (say, the refusal of a call to a crashed node) is what the caller sees.
            frame = arrived;
        }
        catch (OperationCanceledException e)
        {
            if (_callerToken.IsCancellationRequested) throw new OperationCanceledException(e.Message, e, _callerToken);
            if (_deadline?.IsCancellationRequested == true)
                throw new RpcException(RpcStatusCode.DeadlineExceeded, $"no answer from {_target} before the deadline", innerException: e);
            if (_client.IsDown) throw new RpcException(RpcStatusCode.Cancelled, "the RPC node is stopping", innerException: e);
            throw new RpcException(RpcStatusCode.Unavailable, $"peer {_target} went away during the call", innerException: e);
        }
        if (frame.Error is { } error) throw error;
        return frame;
    }

    private async Task RunServerSideAsync()
    {
        var token = _callerGone.Token;
        try
        {
            if (_server is null || _server.IsDown)
            {
                Push(new Frame(null, RpcException.Undelivered(RpcStatusCode.Unavailable, $"peer {_target} unreachable: no such node")));
                return;
            }
            if (!await CrossAsync(_client.PeerId, _target, token, request: true)) return;
            if (_server.IsCrashed) return;
            var core = _server.Server;
            if (core.CheckCaller(_client.PeerId) is { } denied)
            {
                await ReplyAsync(new Frame(null, denied), token);
                return;
            }
            if (!core.TryEnter(_client.PeerId))
            {
                await ReplyAsync(new Frame(null, core.TooManyCalls()), token);
                return;
            }
            RpcException? error;
            try
            {
                error = await core.InvokeAsync(_call, (payload, _, ct) => SendAsync(payload, ct), token);
            }
            finally
            {
                core.Exit(_client.PeerId);
            }
            if (error is not null) await ReplyAsync(new Frame(null, error), token);
            else if (_call.Streaming) await ReplyAsync(new Frame(null, null), token);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            // The caller left or the link broke: nobody is waiting for more.
        }
    }

    private async ValueTask SendAsync(ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        if (!await CrossAsync(_target, _client.PeerId, cancellationToken)) return;
        if (_server!.IsCrashed) throw new IOException("the node crashed");
        Push(new Frame(payload.ToArray(), null));
    }

    private async Task ReplyAsync(Frame frame, CancellationToken cancellationToken)
    {
        if (!await CrossAsync(_target, _client.PeerId, cancellationToken)) return;
        if (_server!.IsCrashed) return;
        Push(frame);
    }

    /// <summary>
    /// Carries one message over the link: false when it vanished (Drop). A broken link (Fail) ends
    /// the call for the caller with Unavailable and for the sender with an IOException.
    /// </summary>
    /// <param name="request">The request itself crosses: when the link is broken, the server provably never got it (as a failed dial on the real stack).</param>
    private async Task<bool> CrossAsync(PeerId from, PeerId to, CancellationToken cancellationToken, bool request = false)
    {
        var link = _network.Link(from, to);
        var latency = link.Latency;
        if (latency > TimeSpan.Zero) await Task.Delay(latency, _network.TimeProvider, cancellationToken);
        else await Task.Yield();
        switch (link.Fault)
        {
            case RpcLinkFault.Drop:
                return false;
            case RpcLinkFault.Fail:
                var message = $"connection between {from} and {to} is broken";
                Push(new Frame(null, request
                    ? RpcException.Undelivered(RpcStatusCode.Unavailable, message)
                    : new RpcException(RpcStatusCode.Unavailable, message)));
                throw new IOException("link broken");
            default:
                return true;
        }
    }

    private void Push(Frame frame)
    {
        var isTerminal = frame.Payload is null;
        if (Volatile.Read(ref _terminal) != 0) return;
        if (isTerminal && Interlocked.Exchange(ref _terminal, 1) != 0) return;
        _frames.Writer.TryWrite(frame);
    }

    public async ValueTask DisposeAsync()
    {
        // Like a reset (or, after the answer, a close): the handler's token fires either way.
        _callerGone.Cancel();
        try
        {
            await _serverSide;
        }
        finally
        {
            _linked.Dispose();
            _deadline?.Dispose();
            _callerGone.Dispose();
        }
    }
}
