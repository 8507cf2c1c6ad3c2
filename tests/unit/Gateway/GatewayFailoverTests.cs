using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Rpc;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Gateway;
using P2PInference.Workers.Hosting;
using static P2PInference.Tests.Unit.Gateway.GatewayHarness;

namespace P2PInference.Tests.Unit.Gateway;

/// <summary>
/// A unary inference goes to a second processor only when the first provably never started it; once
/// the first may have generated, the client gets the error and the second never sees the request.
/// Two processors, the second reporting load so the gateway tries the first one first; a second
/// client with a key of its own stands for everyone else, served throughout.
/// </summary>
public sealed class GatewayFailoverTests
{
    private static GatewayOptions Options() => new() { DefaultRateLimit = new(10_000, 1_000), MaxPromptLength = 1000 };

    private static async Task<(GatewayHarness H, FakeProcessor First, FakeProcessor Second, Func<Task<InferResponse>> Healthy)> StartAsync(
        SimulationExecutor sim, Func<InMemoryRpcNode, IRpcServer>? firstServer = null)
    {
        var h = await GatewayHarness.StartAsync(Options(), time: sim.Clock);
        var first = await h.AddProcessorAsync(firstServer ?? (node => node));
        var second = await h.AddProcessorAsync();
        second.ReportedLoad = 3;
        var otherClient = h.Network.CreateNode();
        var otherKey = "ApiKey " + h.Auth.AddApiKey("user-2");
        var healthy = async () => InferResponse.Parser.Decode(await otherClient.RequestAsync(h.GatewayNode.PeerId, WorkerMethods.Gateway.Infer,
            MessagePackRpcCodec<InferRequest>.Instance.Encode(Prompt("healthy")), As(otherKey), Token));
        // The gateway now knows both processors, and picked the unloaded one.
        Assert.That((await healthy()).Processor, Is.EqualTo(first.PeerId.ToString()));
        return (h, first, second, healthy);
    }

    [Test]
    public void FirstProcessorUnreachable_BeforeTheRequestReachesIt_TheSecondServes() => SimulationTest.Run(async sim =>
    {
        var (h, first, second, healthy) = await StartAsync(sim);
        await using var _ = h;
        h.Network.PartitionOneWay(h.GatewayNode.PeerId, first.PeerId, RpcLinkFault.Fail);

        var response = await h.InferAsync(Prompt("tell me"));

        Assert.That(response.Text, Is.EqualTo(string.Concat(FakeProcessor.DefaultWords)));
        Assert.That(response.Processor, Is.EqualTo(second.PeerId.ToString()));
        Assert.That(first.InferCalls, Is.EqualTo(1), "only the healthy client's first request reached it");
        Assert.That(second.InferCalls, Is.EqualTo(1));
        Assert.That((await healthy()).Processor, Is.EqualTo(second.PeerId.ToString()));
    });

    [Test]
    public void FirstProcessorDraining_RefusesBeforeTheRequestReachesIt_TheSecondServes() => SimulationTest.Run(async sim =>
    {
        DrainingRpcServer? draining = null;
        var (h, first, second, healthy) = await StartAsync(sim, node => draining = new DrainingRpcServer(node));
        await using var _ = h;
        // A rolling restart: the first processor stops taking calls while the gateway still has it cached as the less loaded.
        draining!.BeginDraining();

        var response = await h.InferAsync(Prompt("tell me"));

        Assert.That(response.Processor, Is.EqualTo(second.PeerId.ToString()));
        Assert.That(response.Text, Is.EqualTo(string.Concat(FakeProcessor.DefaultWords)));
        Assert.That(first.InferCalls, Is.EqualTo(1), "only the healthy client's first request reached it");
        Assert.That(second.InferCalls, Is.EqualTo(1));
        Assert.That((await healthy()).Processor, Is.EqualTo(second.PeerId.ToString()), "the draining processor is avoided afterwards");
    });

    [Test]
    public void FirstProcessorCrashesMidGeneration_TheClientGetsAnError_AndTheSecondNeverSeesTheRequest() => SimulationTest.Run(async sim =>
    {
        var (h, first, second, healthy) = await StartAsync(sim);
        await using var _ = h;
        var generating = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        first.Generating = async (_, context, n) =>
        {
            if (n != 2) return;
            generating.TrySetResult();
            await Task.Delay(Timeout.InfiniteTimeSpan, context.CancellationToken);
        };

        var call = h.InferAsync(Prompt("a long story"));
        await generating.Task.WaitOrCancelAsync(Token);
        var servedMeanwhile = await healthy();
        h.Network.Crash(first.PeerId);
        var error = await ErrorOf(() => call);

        Assert.That(servedMeanwhile.Processor, Is.EqualTo(first.PeerId.ToString()), "other requests are served while one generates");
        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Unavailable));
        Assert.That(second.InferCalls, Is.Zero, "the generation may have run: it is not re-run elsewhere");
        Assert.That((await healthy()).Processor, Is.EqualTo(second.PeerId.ToString()), "the crashed processor is avoided afterwards");
        Assert.That(second.Received.Select(r => r.Request.Prompt), Has.None.EqualTo("a long story"));
    });

    [Test]
    public void ProcessorFailingAfterItGotTheRequest_IsNotRetriedElsewhere() => SimulationTest.Run(async sim =>
    {
        var (h, first, second, healthy) = await StartAsync(sim);
        await using var _ = h;
        first.Unary = (r, n) => n == 2
            ? throw new RpcException(RpcStatusCode.Internal, "the inference engine failed")
            : new InferResponse { Text = "ok", FinishReason = "stop" };

        var error = await ErrorOf(() => h.InferAsync(Prompt("tell me")));

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Internal));
        Assert.That(error.NotDelivered, Is.False);
        Assert.That(second.InferCalls, Is.Zero);
        Assert.That((await healthy()).Text, Is.EqualTo("ok"));
    });

    [Test]
    public void ProcessorRefusingOutright_IsFailedOver_ButNotWhenItHadProducedOutput() => SimulationTest.Run(async sim =>
    {
        var (h, first, second, healthy) = await StartAsync(sim);
        await using var _ = h;
        first.Unary = (r, n) => n switch
        {
            2 => throw RpcException.WithRetryAfter(RpcStatusCode.ResourceExhausted, "the processor is busy", TimeSpan.FromSeconds(1)),
            3 => throw new RpcException(RpcStatusCode.ResourceExhausted, "the processor's model server is busy",
                new Dictionary<string, string> { [WorkerMethods.PartialOutputDetail] = "Once upon", [RpcException.RetryAfterKey] = "1000" }),
            _ => new InferResponse { Text = "ok", FinishReason = "stop" },
        };

        var refused = await h.InferAsync(Prompt("first"));
        var secondCallsAfterRefusal = second.InferCalls;
        var partial = await ErrorOf(() => h.InferAsync(Prompt("second")));

        Assert.That(refused.Processor, Is.EqualTo(second.PeerId.ToString()));
        Assert.That(secondCallsAfterRefusal, Is.EqualTo(1));
        Assert.That(partial.Code, Is.EqualTo(RpcStatusCode.ResourceExhausted));
        Assert.That(second.InferCalls, Is.EqualTo(1), "output was produced: not re-run");
        Assert.That((await healthy()).Text, Is.Not.Empty);
    });
}
