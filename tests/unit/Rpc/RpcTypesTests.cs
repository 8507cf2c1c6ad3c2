using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Rpc.Wire;
using P2PInference.TestKit.Conformance;
using FakeTimeProvider = Microsoft.Extensions.Time.Testing.FakeTimeProvider;

namespace P2PInference.Tests.Unit.Rpc;

public sealed class RpcTypesTests
{
    [Test]
    public void ResolveDeadline_TakesTheEarlierOfTimeoutAndDeadline()
    {
        var time = new FakeTimeProvider();
        var now = time.GetUtcNow();

        Assert.That(new RpcCallOptions { Timeout = TimeSpan.FromSeconds(5), Deadline = now.AddSeconds(3) }.ResolveDeadline(time, null), Is.EqualTo(now.AddSeconds(3)));
        Assert.That(new RpcCallOptions { Timeout = TimeSpan.FromSeconds(2), Deadline = now.AddSeconds(3) }.ResolveDeadline(time, null), Is.EqualTo(now.AddSeconds(2)));
        Assert.That(RpcCallOptions.Default.ResolveDeadline(time, TimeSpan.FromSeconds(9)), Is.EqualTo(now.AddSeconds(9)));
        Assert.That(RpcCallOptions.Default.ResolveDeadline(time, null), Is.Null);
    }

    [Test]
    public void FromContext_InheritsDeadlineAndTrace()
    {
        var time = new FakeTimeProvider();
        var deadline = time.GetUtcNow().AddSeconds(4);
        var context = new RpcCallContext(P2PInference.Facilities.Identity.KeyPair.Generate().PeerId, "m", deadline, "r", "trace",
            new Dictionary<string, string>(), time, CancellationToken.None);

        var options = RpcCallOptions.FromContext(context, idempotent: true);

        Assert.That(options.Deadline, Is.EqualTo(deadline));
        Assert.That(options.TraceId, Is.EqualTo("trace"));
        Assert.That(options.Idempotent, Is.True);
        Assert.That(context.RemainingTime, Is.EqualTo(TimeSpan.FromSeconds(4)));
        time.Advance(TimeSpan.FromSeconds(10));
        Assert.That(context.RemainingTime, Is.EqualTo(TimeSpan.Zero));
    }

    [Test]
    public void RetryAfter_RoundTripsThroughDetails_AndIsNullWhenAbsentOrGarbled()
    {
        Assert.That(RpcException.WithRetryAfter(RpcStatusCode.ResourceExhausted, "m", TimeSpan.FromMilliseconds(1500)).RetryAfter,
            Is.EqualTo(TimeSpan.FromMilliseconds(1500)));
        Assert.That(new RpcException(RpcStatusCode.Internal, "m").RetryAfter, Is.Null);
        Assert.That(new RpcException(RpcStatusCode.Internal, "m", new Dictionary<string, string> { [RpcException.RetryAfterKey] = "-5" }).RetryAfter, Is.Null);
    }

    [Test]
    public void MessagePackCodec_RoundTrips_AndRejectsGarbageWithATypedError()
    {
        var codec = MessagePackRpcCodec<ConformanceProbe>.Instance;

        Assert.That(codec.Decode(codec.Encode(new ConformanceProbe { Text = "x" })).Text, Is.EqualTo("x"));
        Assert.That(() => codec.Decode(new byte[] { 0x92, 0xA5, 0x01 }), Throws.InstanceOf<MalformedMessageException>());
    }

    [Test]
    public void EveryStatusCode_CrossesTheWireUnchanged()
    {
        foreach (var code in System.Enum.GetValues<RpcStatusCode>())
        {
            var wire = RpcNode.ToWire(new RpcException(code, "m"));
            var decoded = MessagePackRpcCodec<RpcError>.Instance.Decode(MessagePackRpcCodec<RpcError>.Instance.Encode(wire));
            Assert.That(RpcNode.FromWire(decoded).Code, Is.EqualTo(code));
        }
    }

    [Test]
    public void WireError_OfAnUnknownCode_ArrivesAsInternal()
    {
        var error = RpcNode.FromWire(new RpcError { Code = 99, Message = "?" });

        Assert.That(error.Code, Is.EqualTo(RpcStatusCode.Internal));
    }

    [Test]
    public void Options_RejectNonsense()
    {
        Assert.That(() => new RpcOptions { MaxMessageSize = 0 }.Validate(), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => new RpcOptions { MaxConcurrentCallsPerPeer = 0 }.Validate(), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(() => new RpcOptions { LatencyEwmaAlpha = 0 }.Validate(), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }
}
