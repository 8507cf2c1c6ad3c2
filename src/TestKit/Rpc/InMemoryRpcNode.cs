using System.Collections.Frozen;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Discovery;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;

namespace P2PInference.TestKit.Rpc;

/// <summary>One node of an <see cref="InMemoryRpcNetwork"/>: an RPC server and client by PeerId.</summary>
public sealed class InMemoryRpcNode : IRpcServer, IRpcClient, IAsyncDisposable
{
    private static readonly IReadOnlyDictionary<string, string> NoMetadata = FrozenDictionary<string, string>.Empty;

    private readonly InMemoryRpcNetwork _network;
    private readonly RpcServerCore _server;
    private readonly RpcTopicRouter _router;
    private readonly CancellationTokenSource _gone = new();
    private long _nextRequestId;
    private int _crashed;

    internal InMemoryRpcNode(InMemoryRpcNetwork network, PeerId peerId, RpcOptions options, IDiscovery? discovery)
    {
        options.Validate();
        _network = network;
        PeerId = peerId;
        Options = options;
        var logger = options.LoggerFactory.CreateLogger<InMemoryRpcNode>();
        _server = new RpcServerCore(options, logger);
        _router = new RpcTopicRouter(peerId, discovery, options, logger, null);
    }

    public PeerId PeerId { get; }

    /// <summary>Where this node's calls come from, as their handlers see it (<see cref="RpcCallContext.RemoteAddress"/>); null: unknown, as by default.</summary>
    public Multiaddress? Address { get; set; }

    public RpcOptions Options { get; }

    /// <summary>True after <see cref="InMemoryRpcNetwork.Crash"/> or disposal: the node neither serves nor calls.</summary>
    public bool IsDown => _gone.IsCancellationRequested;

    internal bool IsCrashed => Volatile.Read(ref _crashed) != 0;

    internal CancellationToken Gone => _gone.Token;

    internal RpcServerCore Server => _server;

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
        var exchange = Start(peer, method, request, options, streaming: false, cancellationToken);
        await using (exchange)
        {
            var frame = await exchange.ReadAsync();
            if (frame.Payload is null) throw new RpcException(RpcStatusCode.Internal, $"peer {peer} ended a unary call without a response");
            return frame.Payload;
        }
    }

    public async IAsyncEnumerable<byte[]> RequestStreamAsync(PeerId peer, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var exchange = Start(peer, method, request, options, streaming: true, cancellationToken);
        await using (exchange)
        {
            while (true)
            {
                var frame = await exchange.ReadAsync();
                if (frame.Payload is null) yield break;
                yield return frame.Payload;
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

    private InMemoryRpcExchange Start(PeerId peer, string method, ReadOnlyMemory<byte> request, RpcCallOptions? options, bool streaming,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(peer);
        ObjectDisposedException.ThrowIf(IsDown && !IsCrashed, this);
        options ??= RpcCallOptions.Default;
        var deadline = RpcCallChecks.Check(Options, method, request, options);
        var time = Options.TimeProvider;
        var call = new RpcInvocation(PeerId, method,
            request.ToArray(), // the caller may reuse its buffer once the call is sent, as with a real stream
            deadline is { } d ? d - time.GetUtcNow() : null,
            options.RequestId ?? $"{PeerId.ToString()[^8..]}-{Interlocked.Increment(ref _nextRequestId)}",
            options.TraceId ?? RpcCallChecks.NewTraceId(Options.RandomSource),
            options.Metadata is { Count: > 0 } metadata ? metadata.ToFrozenDictionary(StringComparer.Ordinal) : NoMetadata,
            streaming, Address, Address is { } address ? AddressOrigin.ForLimits(address) : null);
        var exchange = new InMemoryRpcExchange(_network, this, peer, call, deadline, cancellationToken);
        exchange.Start();
        return exchange;
    }

    internal void Crash()
    {
        Volatile.Write(ref _crashed, 1);
        Stop();
    }

    private void Stop()
    {
        _server.Stop();
        try
        {
            _gone.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Graceful stop: running handlers are cancelled (their callers get Unavailable), the node leaves the network.</summary>
    public ValueTask DisposeAsync()
    {
        _network.Remove(this);
        Stop();
        return ValueTask.CompletedTask;
    }
}
