using P2PInference.Facilities.Net.Protocols.Ping;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Protocols;

[CancelAfter(10000)]
public sealed class PingProtocolTests
{
    private static CancellationToken Token => TestContext.CurrentContext.CancellationToken;

    /// <summary>A clock that moves a fixed step each time it is read, so an RTT is predictable.</summary>
    private sealed class SteppingTimeProvider(TimeSpan step) : TimeProvider
    {
        private long _ticks;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => Interlocked.Add(ref _ticks, step.Ticks);
    }

    [Test]
    public async Task Ping_ReturnsRoundTripTime_FromTheTimeProvider()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        var handled = PingProtocol.HandleAsync(listener, Token);
        using (listener)
        {
            using (dialer)
            {
                var rtt = await PingProtocol.PingAsync(dialer, new SteppingTimeProvider(TimeSpan.FromMilliseconds(7)), Token);
                Assert.That(rtt, Is.EqualTo(TimeSpan.FromMilliseconds(7)));
            }
            await handled;
        }
    }

    [Test]
    public async Task Ping_CanRepeat_OnTheSameStream()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        var handled = PingProtocol.HandleAsync(listener, Token);
        using (listener)
        {
            using (dialer)
            {
                for (var i = 0; i < 5; i++)
                    Assert.That(await PingProtocol.PingAsync(dialer, TimeProvider.System, Token), Is.GreaterThanOrEqualTo(TimeSpan.Zero));
            }
            // The dialer closing ends the listener's loop without error.
            await handled;
        }
    }

    [Test]
    public async Task Ping_SendsThirtyTwoRandomBytes()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            var ping = PingProtocol.PingAsync(dialer, TimeProvider.System, Token);
            var first = new byte[PingProtocol.PayloadSize];
            await listener.ReadExactlyAsync(first, Token);
            await listener.WriteAsync(first, Token);
            await ping;

            ping = PingProtocol.PingAsync(dialer, TimeProvider.System, Token);
            var second = new byte[PingProtocol.PayloadSize];
            await listener.ReadExactlyAsync(second, Token);
            await listener.WriteAsync(second, Token);
            await ping;

            Assert.That(second, Is.Not.EqualTo(first));
        }
    }

    [Test]
    public async Task Ping_ThrowsPingException_WhenEchoIsCorrupted()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            var ping = PingProtocol.PingAsync(dialer, TimeProvider.System, Token);
            var payload = new byte[PingProtocol.PayloadSize];
            await listener.ReadExactlyAsync(payload, Token);
            payload[17] ^= 0x01;
            await listener.WriteAsync(payload, Token);

            Assert.ThrowsAsync<PingException>(() => ping);
        }
    }

    [TestCase(0)]
    [TestCase(31)]
    public async Task Ping_ThrowsPingException_WhenStreamEndsBeforeTheEcho(int echoed)
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        {
            var ping = PingProtocol.PingAsync(dialer, TimeProvider.System, Token);
            var payload = new byte[PingProtocol.PayloadSize];
            await listener.ReadExactlyAsync(payload, Token);
            await listener.WriteAsync(payload.AsMemory(0, echoed), Token);
            listener.Dispose();

            Assert.ThrowsAsync<PingException>(() => ping);
        }
    }

    [Test]
    public async Task Handle_ThrowsPingException_WhenStreamEndsInsideAPayload()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (listener)
        {
            var handled = PingProtocol.HandleAsync(listener, Token);
            await dialer.WriteAsync(new byte[PingProtocol.PayloadSize + 5], Token);
            var echo = new byte[PingProtocol.PayloadSize];
            await dialer.ReadExactlyAsync(echo, Token);
            dialer.Dispose();

            Assert.ThrowsAsync<PingException>(() => handled);
        }
    }

    [Test]
    public async Task Handle_EchoesEachPayload_Unchanged()
    {
        var payloads = new byte[3 * PingProtocol.PayloadSize];
        new Random(3).NextBytes(payloads);
        var stream = new ScriptedStream(payloads);

        await PingProtocol.HandleAsync(stream, Token);

        Assert.That(stream.Written, Is.EqualTo(payloads));
        Assert.That(stream.Writes, Has.Count.EqualTo(3));
    }
}
