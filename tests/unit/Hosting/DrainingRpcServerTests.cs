using System.Runtime.CompilerServices;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;
using P2PInference.TestKit.Rpc;
using P2PInference.Workers.Hosting;

namespace P2PInference.Tests.Unit.Hosting;

[CancelAfter(10_000)]
public sealed class DrainingRpcServerTests
{
    private InMemoryRpcNode _server = null!;
    private InMemoryRpcNode _client = null!;
    private DrainingRpcServer _draining = null!;

    [SetUp]
    public void SetUp()
    {
        var network = new InMemoryRpcNetwork();
        _server = network.CreateNode();
        _client = network.CreateNode();
        _draining = new DrainingRpcServer(_server);
    }

    [TearDown]
    public async Task TearDown()
    {
        await _client.DisposeAsync();
        await _server.DisposeAsync();
    }

    [Test]
    public void Drained_CompletesAtOnce_WhenNothingRuns()
    {
        _draining.BeginDraining();

        Assert.That(_draining.Drained.IsCompleted, Is.True);
        Assert.That(_draining.IsDraining, Is.True);
    }

    [Test]
    public async Task StreamingCall_CountsAsInFlightUntilItsLastItem(CancellationToken ct)
    {
        var release = new TaskCompletionSource();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _draining.RespondStreaming("count", (_, call) => Items(release.Task, started, call.CancellationToken));
        var received = new List<byte>();
        var stream = Task.Run(async () =>
        {
            await foreach (var item in _client.RequestStreamAsync(_server.PeerId, "count", ReadOnlyMemory<byte>.Empty, null, ct)) received.Add(item[0]);
        }, ct);
        // The handler runs, so the call was admitted before draining began. (A count above zero alone
        // could be a call still deciding: it then sees the flag and is refused, as a racing call should be.)
        await started.Task.WaitAsync(ct);

        _draining.BeginDraining();
        Assert.That(_draining.Drained.IsCompleted, Is.False);
        var refused = Assert.ThrowsAsync<RpcException>(async () =>
        {
            await foreach (var _ in _client.RequestStreamAsync(_server.PeerId, "count", ReadOnlyMemory<byte>.Empty, null, ct))
            {
            }
        });
        Assert.That(refused!.Code, Is.EqualTo(RpcStatusCode.Unavailable));

        release.SetResult();
        await stream;
        await _draining.Drained.WaitAsync(ct);
        Assert.That(received, Is.EqualTo(new byte[] { 1, 2 }));
    }

    [Test]
    public async Task UnaryCall_IsRefusedWithUnavailable_OnceDraining(CancellationToken ct)
    {
        _draining.Respond("echo", (request, _) => ValueTask.FromResult(request));
        Assert.That(await _client.RequestAsync(_server.PeerId, "echo", new byte[] { 7 }, null, ct), Is.EqualTo(new byte[] { 7 }));

        _draining.BeginDraining();
        var error = Assert.ThrowsAsync<RpcException>(() => _client.RequestAsync(_server.PeerId, "echo", new byte[] { 7 }, null, ct));

        Assert.That(error!.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(error.Message, Is.EqualTo(DrainingRpcServer.StoppingMessage));
        Assert.That(_draining.InFlight, Is.Zero);
    }

    [Test]
    public void AllowedPeersAndUnrespond_PassThrough()
    {
        var peer = KeyPair.Generate().PeerId;
        _draining.AllowedPeers = new HashSet<PeerId> { peer };
        _draining.Respond("m", (r, _) => ValueTask.FromResult(r));

        Assert.That(_server.AllowedPeers, Does.Contain(peer));
        Assert.That(_draining.Unrespond("m"), Is.True);
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> Items(Task release, TaskCompletionSource started, [EnumeratorCancellation] CancellationToken ct)
    {
        started.TrySetResult();
        yield return new byte[] { 1 };
        await release.WaitAsync(ct);
        yield return new byte[] { 2 };
    }
}
