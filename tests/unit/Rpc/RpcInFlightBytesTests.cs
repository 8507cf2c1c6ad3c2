using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Tests.Unit.Rpc;

/// <summary>The per-peer budget of request bytes a server holds at once (what the RPC node checks before it reads a body).</summary>
public sealed class RpcInFlightBytesTests
{
    private static readonly PeerId Alice = KeyPair.FromSeed(Enumerable.Repeat((byte)1, 32).ToArray()).PeerId;
    private static readonly PeerId Bob = KeyPair.FromSeed(Enumerable.Repeat((byte)2, 32).ToArray()).PeerId;

    private static RpcServerCore Server(long budget) =>
        new(new RpcOptions { MaxMessageSize = 100, MaxInFlightBytesPerPeer = budget }, NullLogger.Instance);

    [Test]
    public void APeerIsRefusedPastItsBudget_OtherPeersAreNot_AndTheBudgetComesBack()
    {
        var server = Server(budget: 250);

        Assert.That(server.TryReserveBytes(Alice, 100), Is.True);
        Assert.That(server.TryReserveBytes(Alice, 100), Is.True);
        Assert.That(server.TryReserveBytes(Alice, 100), Is.False, "300 bytes would be past 250");
        Assert.That(server.TryReserveBytes(Alice, 50), Is.True, "what fits still fits");
        Assert.That(server.TryReserveBytes(Bob, 100), Is.True, "each peer has its own budget");

        server.ReleaseBytes(Alice, 100);
        Assert.That(server.TryReserveBytes(Alice, 100), Is.True, "a call that ended gave its bytes back");
        Assert.That(server.TooManyBytes(100).NotDelivered, Is.True, "the refusal says the call never reached a handler");
    }

    [Test]
    public void APeerWithNothingInFlight_MayAlwaysSendOneMessage_EvenPastASmallBudget()
    {
        var server = Server(budget: 10);

        Assert.That(server.TryReserveBytes(Alice, 100), Is.True);
        Assert.That(server.TryReserveBytes(Alice, 1), Is.False);
        server.ReleaseBytes(Alice, 100);
        Assert.That(server.TryReserveBytes(Alice, 100), Is.True);
    }
}
