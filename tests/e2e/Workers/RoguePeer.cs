using System.Reflection;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Threading;
using P2PInference.Facilities.Trust;
using P2PInference.Workers.Contracts;

namespace P2PInference.Tests.E2E.Workers;

/// <summary>
/// A peer that claims a worker role by announcing its topic, presents whatever grant it was given (or
/// none, or never answers the grant query when silent), and records every request that reaches it: each
/// worker method is served (unary or streaming, as the real workers serve it) by a handler that only
/// writes down what arrived and fails.
/// </summary>
internal sealed class RoguePeer : IAsyncDisposable
{
    private readonly RpcNode _rpc;
    private readonly List<ReceivedRequest> _received = [];
    private readonly List<int> _grantQueries = [];

    public RoguePeer(RpcNode rpc, RoleGrant? grant, bool silent = false)
    {
        _rpc = rpc;
        Grant = grant;
        if (silent)
        {
            rpc.Respond(GrantExchange.Method, async (request, context) =>
            {
                _grantQueries.Add(request.Length);
                await new TaskCompletionSource().Task.WaitOrCancelAsync(context.CancellationToken);
                return ReadOnlyMemory<byte>.Empty;
            });
        }
        else if (grant is not null)
        {
            var bytes = grant.ToBytes();
            rpc.Respond(GrantExchange.Method, (request, _) =>
            {
                _grantQueries.Add(request.Length);
                return ValueTask.FromResult<ReadOnlyMemory<byte>>(bytes);
            });
        }
        foreach (var method in WorkerMethodNames)
        {
            if (method.EndsWith("inferStream", StringComparison.Ordinal))
                rpc.RespondStreaming(method, (request, context) => Refuse(method, request, context));
            else
                rpc.Respond(method, (request, context) => throw Record(method, request, context));
        }
    }

    public PeerId PeerId => _rpc.PeerId;

    /// <summary>The grant it presents, or null.</summary>
    public RoleGrant? Grant { get; }

    /// <summary>Every worker request that reached this peer: what the test must find empty.</summary>
    public IReadOnlyList<ReceivedRequest> Received => _received;

    /// <summary>The payload sizes of the grant queries callers sent before deciding not to call.</summary>
    public IReadOnlyList<int> GrantQueries => _grantQueries;

    public static IReadOnlyList<string> WorkerMethodNames { get; } = typeof(WorkerMethods).GetNestedTypes()
        .SelectMany(t => t.GetFields(BindingFlags.Public | BindingFlags.Static))
        .Where(f => f.IsLiteral && f.FieldType == typeof(string))
        .Select(f => (string)f.GetRawConstantValue()!)
        .ToArray();

    private RpcException Record(string method, ReadOnlyMemory<byte> request, RpcCallContext context)
    {
        _received.Add(new ReceivedRequest(method, context.RemotePeer, request.Length, context.Metadata.Keys.ToArray()));
        return new RpcException(RpcStatusCode.Internal, "rogue");
    }

    private async IAsyncEnumerable<ReadOnlyMemory<byte>> Refuse(string method, ReadOnlyMemory<byte> request, RpcCallContext context)
    {
        await Task.Yield();
        throw Record(method, request, context);
#pragma warning disable CS0162 // an iterator needs a yield to be one
        yield break;
#pragma warning restore CS0162
    }

    public ValueTask DisposeAsync() => _rpc.DisposeAsync();

    public sealed record ReceivedRequest(string Method, PeerId From, int PayloadBytes, IReadOnlyList<string> MetadataKeys);
}
