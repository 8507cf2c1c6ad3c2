using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Protocols;

/// <summary>Lazy negotiation: the dialer sends its proposal with its first data and reads the answer afterwards.</summary>
[CancelAfter(10000)]
public sealed class MultistreamLazyTests
{
    private const string Protocol = "/p2pinference/rpc/1.0.0";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static CancellationToken Token => TestContext.CurrentContext.CancellationToken;

    private static byte[] Message(string text)
    {
        var body = System.Text.Encoding.UTF8.GetBytes(text + "\n");
        return [.. Varint.Encode((ulong)body.Length), .. body];
    }

    private static byte[] LazyProposal(string protocol, byte[] data)
    {
        var bytes = new byte[MultistreamSelect.GetLazyProposalLength(protocol) + data.Length];
        var written = MultistreamSelect.WriteLazyProposal(bytes, protocol);
        data.CopyTo(bytes, written);
        return bytes;
    }

    [Test]
    public void WriteLazyProposal_IsTheHeaderFollowedByTheProposal()
    {
        Assert.That(LazyProposal(Protocol, []), Is.EqualTo(Message(MultistreamSelect.ProtocolId).Concat(Message(Protocol)).ToArray()));
    }

    [TestCase(true)]
    [TestCase(false)]
    public async Task Listener_AcceptsALazyProposal_AndLeavesTheDataThatCameWithIt(bool dialerSpokeFirst)
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            await dialer.WriteAsync(LazyProposal(Protocol, "request"u8.ToArray()), Token);
            var selected = await MultistreamSelect.HandleAsync(listener, p => p == Protocol, [Protocol], () => dialerSpokeFirst, Token);
            await MultistreamSelect.ReadLazyAnswerAsync(dialer, Protocol, Timeout, TimeProvider.System, Token);

            var data = new byte[7];
            await listener.ReadExactlyAsync(data, Token);
            Assert.That(selected, Is.EqualTo(Protocol));
            Assert.That(data, Is.EqualTo("request"u8.ToArray()));
        }
    }

    [TestCase(true, true)]
    [TestCase(true, false)]
    [TestCase(false, true)]
    public async Task Listener_HandsItsAnswerToHoldAnswer_OnlyWhenTheDialersDataIsHere(bool dataHere, bool held)
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            await dialer.WriteAsync(LazyProposal(Protocol, dataHere ? "request"u8.ToArray() : []), Token);
            byte[]? handed = null;
            var selected = await MultistreamSelect.HandleAsync(listener, p => p == Protocol, [Protocol], () => dataHere,
                answer =>
                {
                    handed = answer.ToArray();
                    return held;
                }, Token);
            // Whatever was not held was written; the test writes the held answer itself, as the stream would.
            if (handed is not null && held) await listener.WriteAsync(handed, Token);
            await MultistreamSelect.ReadLazyAnswerAsync(dialer, Protocol, Timeout, TimeProvider.System, Token);

            Assert.That(selected, Is.EqualTo(Protocol));
            Assert.That(handed, dataHere ? Is.EqualTo(LazyProposal(Protocol, [])) : Is.Null);
        }
    }

    [Test]
    public async Task Listener_RefusingALazyProposal_ReportsNoProtocolSupported_AndTheDialerReadsItsNa()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            // The data after the proposal is no multistream message: the listener must not call it a malformed negotiation.
            await dialer.WriteAsync(LazyProposal(Protocol, [0x83, 0xA6, 0x4D, 0x65, 0x74, 0x68]), Token);
            var listening = MultistreamSelect.HandleAsync(listener, _ => false, [], () => true, Token);
            var refusal = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.ReadLazyAnswerAsync(dialer, Protocol, Timeout, TimeProvider.System, Token));
            dialer.Dispose();
            var listenerError = Assert.ThrowsAsync<MultistreamException>(() => listening);

            Assert.That(refusal!.Reason, Is.EqualTo(MultistreamFailure.NoProtocolSupported));
            Assert.That(listenerError!.Reason, Is.EqualTo(MultistreamFailure.NoProtocolSupported));
        }
    }

    [Test]
    public async Task Listener_SendsItsHeaderFirst_WhenTheDialerWaitsForItBeforeProposing()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            // The dialer's header is here, its proposal is not: it waits for ours first.
            await dialer.WriteAsync(Message(MultistreamSelect.ProtocolId), Token);
            var checks = 0;
            var handled = MultistreamSelect.HandleAsync(listener, p => p == Protocol, [Protocol], () => checks++ == 0, Token);
            var header = new byte[Message(MultistreamSelect.ProtocolId).Length];
            await dialer.ReadExactlyAsync(header, Token);
            await dialer.WriteAsync(Message(Protocol), Token);
            var answer = new byte[Message(Protocol).Length];
            await dialer.ReadExactlyAsync(answer, Token);

            Assert.That(header, Is.EqualTo(Message(MultistreamSelect.ProtocolId)));
            Assert.That(answer, Is.EqualTo(Message(Protocol)));
            Assert.That(await handled, Is.EqualTo(Protocol));
        }
    }

    [Test]
    public async Task ReadLazyAnswer_ThrowsNoProtocolSupported_WhenTheListenerAnswersNa()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            await dialer.WriteAsync(LazyProposal("/not/served/1.0.0", "request"u8.ToArray()), Token);
            _ = MultistreamSelect.HandleAsync(listener, p => p == Protocol, [Protocol], () => true, Token);

            var e = Assert.ThrowsAsync<MultistreamException>(() =>
                MultistreamSelect.ReadLazyAnswerAsync(dialer, "/not/served/1.0.0", Timeout, TimeProvider.System, Token));
            Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.NoProtocolSupported));
        }
    }

    [Test]
    public async Task ReadLazyAnswer_ThrowsMalformedMessage_WhenAnotherProtocolIsEchoed()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            await listener.WriteAsync(Message(MultistreamSelect.ProtocolId).Concat(Message("/other/1.0.0")).ToArray(), Token);

            var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.ReadLazyAnswerAsync(dialer, Protocol, Timeout, TimeProvider.System, Token));
            Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.MalformedMessage));
            Assert.That(e.Message, Does.Contain("/other/1.0.0"));
        }
    }

    [Test]
    public async Task ReadLazyAnswer_ThrowsWrongHeader_WhenTheListenerSpeaksAnotherProtocol()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            await listener.WriteAsync(Message("/multistream/2.0.0"), Token);

            var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.ReadLazyAnswerAsync(dialer, Protocol, Timeout, TimeProvider.System, Token));
            Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.WrongHeader));
        }
    }

    [Test]
    public void ReadLazyAnswer_TimesOutOnTheInjectedClock_WhenTheListenerNeverEchoes() => SimulationTest.Run(async sim =>
    {
        var time = sim.Clock;
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            // Only the header comes; the answer never does.
            await listener.WriteAsync(Message(MultistreamSelect.ProtocolId), CancellationToken.None);
            var reading = MultistreamSelect.ReadLazyAnswerAsync(dialer, Protocol, Timeout, time, CancellationToken.None);
            await time.AdvanceAsync(Timeout - TimeSpan.FromMilliseconds(1));
            Assert.That(reading.IsCompleted, Is.False);

            await time.AdvanceAsync(TimeSpan.FromMilliseconds(1));
            await Assert.ThatAsync(() => reading,
                Throws.TypeOf<MultistreamException>().With.Property(nameof(MultistreamException.Reason)).EqualTo(MultistreamFailure.TimedOut));
        }
    });

    [Test]
    public void ReadLazyAnswer_PassesTheCallersCancellationThrough()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        using (var cancel = new CancellationTokenSource())
        {
            var reading = MultistreamSelect.ReadLazyAnswerAsync(dialer, Protocol, Timeout, TimeProvider.System, cancel.Token);
            cancel.Cancel();
            Assert.That(async () => await reading, Throws.InstanceOf<OperationCanceledException>());
        }
    }

    [TestCase("")]
    [TestCase("na")]
    [TestCase("with\nnewline")]
    public void WriteLazyProposal_RejectsInvalidProtocolIds(string protocol)
    {
        Assert.That(() => MultistreamSelect.WriteLazyProposal(new byte[4096], protocol), Throws.InstanceOf<ArgumentException>());
    }

    [TestCase(true)]
    [TestCase(false)]
    public async Task LazyStream_SendsTheProposalWithItsFirstWrite_AndReadsPastTheAnswer(bool ownAnswerTimeout)
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (listener)
        {
            await using var lazy = ownAnswerTimeout
                ? new MultistreamLazyStream(dialer, Protocol, Timeout, TimeProvider.System)
                : new MultistreamLazyStream(dialer, Protocol);
            Assert.That((lazy.CanRead, lazy.CanWrite, lazy.CanSeek), Is.EqualTo((true, true, false)));

            await lazy.WriteAsync("hello"u8.ToArray(), 0, 5, Token);
            var selected = await MultistreamSelect.HandleAsync(listener, p => p == Protocol, [Protocol], () => true, Token);
            var hello = new byte[5];
            await listener.ReadExactlyAsync(hello, Token);
            await listener.WriteAsync("world"u8.ToArray(), Token);
            var world = new byte[5];
            var read = await lazy.ReadAsync(world, 0, 5, Token);
            await lazy.WriteAsync("again"u8.ToArray(), Token);
            var again = new byte[5];
            await listener.ReadExactlyAsync(again, Token);

            Assert.That(selected, Is.EqualTo(Protocol));
            Assert.That(hello, Is.EqualTo("hello"u8.ToArray()), "the proposal carried the first write");
            Assert.That(world.AsSpan(0, read).ToArray(), Is.EqualTo("world"u8.ToArray()[..read]), "the answer is consumed before the first read");
            Assert.That(again, Is.EqualTo("again"u8.ToArray()), "later writes go straight through");
        }
    }

    [Test]
    public async Task LazyStream_SendProposalAsync_SendsItAlone_ForAProtocolWhoseListenerSpeaksFirst()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (listener)
        {
            using var lazy = new MultistreamLazyStream(dialer, Protocol);
            await lazy.SendProposalAsync(Token);
            await lazy.SendProposalAsync(Token);
            await MultistreamSelect.HandleAsync(listener, p => p == Protocol, [Protocol], () => true, Token);
            await listener.WriteAsync("x"u8.ToArray(), Token);
            await lazy.FlushAsync(Token);
            lazy.Flush();
            var x = new byte[1];
            await lazy.ReadExactlyAsync(x, Token);
            Assert.That(x, Is.EqualTo("x"u8.ToArray()), "the proposal went out once, and only the listener's answer came before its data");
        }
    }

    [Test]
    public async Task LazyStream_RefusesSynchronousUse_AReadBeforeTheProposal_AndSeeking()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (listener)
        {
            using var lazy = new MultistreamLazyStream(dialer, Protocol);
            await Assert.ThatAsync(() => lazy.ReadAsync(new byte[1], Token).AsTask(), Throws.InvalidOperationException);
            Assert.That(() => lazy.Read(new byte[1], 0, 1), Throws.TypeOf<NotSupportedException>());
            Assert.That(() => lazy.Write(new byte[1], 0, 1), Throws.TypeOf<NotSupportedException>());
            Assert.That(() => lazy.Length, Throws.TypeOf<NotSupportedException>());
            Assert.That(() => lazy.Position, Throws.TypeOf<NotSupportedException>());
            Assert.That(() => lazy.Position = 1, Throws.TypeOf<NotSupportedException>());
            Assert.That(() => lazy.Seek(0, SeekOrigin.Begin), Throws.TypeOf<NotSupportedException>());
            Assert.That(() => lazy.SetLength(0), Throws.TypeOf<NotSupportedException>());
            Assert.That(() => new MultistreamLazyStream(dialer, "with\nnewline"), Throws.InstanceOf<ArgumentException>(), "an invalid protocol id is refused before anything is written");
        }
    }

    [Test]
    public async Task LazyStream_Refused_SurfacesNoProtocolSupported_OnTheFirstRead()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (listener)
        {
            using var lazy = new MultistreamLazyStream(dialer, Protocol, Timeout, TimeProvider.System);
            await lazy.WriteAsync("data"u8.ToArray(), Token);
            var listening = MultistreamSelect.HandleAsync(listener, _ => false, [], () => true, Token);
            await Assert.ThatAsync(() => lazy.ReadAsync(new byte[4], Token).AsTask(),
                Throws.TypeOf<MultistreamException>().With.Property(nameof(MultistreamException.Reason)).EqualTo(MultistreamFailure.NoProtocolSupported));
            lazy.Dispose();
            await Assert.ThatAsync(() => listening, Throws.TypeOf<MultistreamException>());
        }
    }
}
