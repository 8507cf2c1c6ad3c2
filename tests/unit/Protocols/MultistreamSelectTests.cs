using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Net.Multistream;
using P2PInference.TestKit;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Protocols;

[CancelAfter(10000)]
public sealed class MultistreamSelectTests
{
    private static CancellationToken Token => TestContext.CurrentContext.CancellationToken;

    private static readonly byte[] Header = Message(MultistreamSelect.ProtocolId);

    /// <summary>One multistream message, encoded by hand: uvarint length, text, newline.</summary>
    private static byte[] Message(string text)
    {
        var body = System.Text.Encoding.UTF8.GetBytes(text + "\n");
        return [.. Varint.Encode((ulong)body.Length), .. body];
    }

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    private static async Task<byte[]> ReadExactlyAsync(Stream stream, int count)
    {
        var buffer = new byte[count];
        await stream.ReadExactlyAsync(buffer, Token);
        return buffer;
    }

    [Test]
    public async Task Select_ReturnsProtocol_WhenListenerSupportsIt()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            var handled = MultistreamSelect.HandleAsync(listener, ["/noise", "/yamux/1.0.0"], Token);
            var selected = await MultistreamSelect.SelectAsync(dialer, ["/noise"], Token);

            Assert.That(selected, Is.EqualTo("/noise"));
            Assert.That(await handled, Is.EqualTo("/noise"));
        }
    }

    [Test]
    public async Task Select_FallsBackToNextProtocol_AfterNa()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            var handled = MultistreamSelect.HandleAsync(listener, ["/yamux/1.0.0"], Token);
            var selected = await MultistreamSelect.SelectAsync(dialer, ["/mplex/6.7.0", "/yamux/1.0.0"], Token);

            Assert.That(selected, Is.EqualTo("/yamux/1.0.0"));
            Assert.That(await handled, Is.EqualTo("/yamux/1.0.0"));
        }
    }

    [Test]
    public void Select_ThrowsNoProtocolSupported_WhenEveryProposalGetsNa()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (listener)
        {
            var handled = MultistreamSelect.HandleAsync(listener, ["/yamux/1.0.0"], Token);
            using (dialer)
            {
                var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.SelectAsync(dialer, ["/tls/1.0.0", "/mplex/6.7.0"], Token));
                Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.NoProtocolSupported));
            }
            // The dialer gives up and closes; the listener sees the stream end.
            var closed = Assert.ThrowsAsync<MultistreamException>(() => handled);
            Assert.That(closed!.Reason, Is.EqualTo(MultistreamFailure.StreamClosed));
        }
    }

    [Test]
    public async Task Select_AcceptsTheFirstSupported_FromAHashSetOrAPredicate()
    {
        var (d1, l1) = DuplexStreamPair.Create();
        using (d1)
        using (l1)
        {
            var handled = MultistreamSelect.HandleAsync(l1, new HashSet<string>(StringComparer.Ordinal) { "/b", "/c" }, Token);
            Assert.That(await MultistreamSelect.SelectAsync(d1, ["/a", "/c"], Token), Is.EqualTo("/c"));
            Assert.That(await handled, Is.EqualTo("/c"));
        }

        var (d2, l2) = DuplexStreamPair.Create();
        using (d2)
        using (l2)
        {
            var handled = MultistreamSelect.HandleAsync(l2, p => p.StartsWith("/rpc/", StringComparison.Ordinal), ["/rpc/1"], Token);
            Assert.That(await MultistreamSelect.SelectAsync(d2, ["/a", "/rpc/2"], Token), Is.EqualTo("/rpc/2"));
            Assert.That(await handled, Is.EqualTo("/rpc/2"));
        }
    }

    [Test]
    public async Task Dialer_SendsHeaderAndFirstProposal_InOneWrite()
    {
        var stream = new ScriptedStream(Concat(Header, Message("/noise")));

        var selected = await MultistreamSelect.SelectAsync(stream, ["/noise"], Token);

        Assert.That(selected, Is.EqualTo("/noise"));
        Assert.That(stream.Writes, Has.Count.EqualTo(1));
        Assert.That(stream.Writes[0], Is.EqualTo(System.Text.Encoding.ASCII.GetBytes("\x13/multistream/1.0.0\n\x07/noise\n")));
    }

    [Test]
    public async Task Dialer_SendsLaterProposals_OneAtATime()
    {
        var stream = new ScriptedStream(Concat(Header, Message("na"), Message("/b")));

        Assert.That(await MultistreamSelect.SelectAsync(stream, ["/a", "/b"], Token), Is.EqualTo("/b"));

        Assert.That(stream.Writes, Has.Count.EqualTo(2));
        Assert.That(stream.Writes[1], Is.EqualTo(Message("/b")));
    }

    [Test]
    public async Task Listener_AcceptsPipelinedHeaderAndProposal_AndRepliesWithHeaderAndEcho()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            await dialer.WriteAsync(Concat(Header, Message("/noise")), Token);

            Assert.That(await MultistreamSelect.HandleAsync(listener, ["/noise"], Token), Is.EqualTo("/noise"));

            var expected = Concat(Header, Message("/noise"));
            Assert.That(await ReadExactlyAsync(dialer, expected.Length), Is.EqualTo(expected));
        }
    }

    [Test]
    public async Task Listener_LeavesApplicationBytes_AfterNegotiationUnread()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            await dialer.WriteAsync(Concat(Header, Message("/app"), "hello"u8.ToArray()), Token);

            await MultistreamSelect.HandleAsync(listener, ["/app"], Token);

            Assert.That(await ReadExactlyAsync(listener, 5), Is.EqualTo("hello"u8.ToArray()));
        }
    }

    [Test]
    public async Task Dialer_LeavesApplicationBytes_ThatArriveWithTheEcho_Unread()
    {
        var stream = new ScriptedStream(Concat(Header, Message("na"), Message("/app"), "world"u8.ToArray()));

        await MultistreamSelect.SelectAsync(stream, ["/other", "/app"], Token);

        Assert.That(await ReadExactlyAsync(stream, 5), Is.EqualTo("world"u8.ToArray()));
    }

    [Test]
    public async Task BothSides_ContinueWithApplicationData_AfterNegotiation()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        using (listener)
        {
            var handled = Task.Run(async () =>
            {
                await MultistreamSelect.HandleAsync(listener, ["/app"], Token);
                await listener.WriteAsync("world"u8.ToArray(), Token);
            }, Token);
            await MultistreamSelect.SelectAsync(dialer, ["/app"], Token);
            await dialer.WriteAsync("hello"u8.ToArray(), Token);

            await handled;
            Assert.That(await ReadExactlyAsync(dialer, 5), Is.EqualTo("world"u8.ToArray()));
            Assert.That(await ReadExactlyAsync(listener, 5), Is.EqualTo("hello"u8.ToArray()));
        }
    }

    [Test]
    public async Task List_ReturnsTheListenersProtocols()
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (listener)
        {
            var handled = MultistreamSelect.HandleAsync(listener, ["/noise", "/yamux/1.0.0"], Token);
            using (dialer)
                Assert.That(await MultistreamSelect.ListAsync(dialer, Token), Is.EqualTo(new[] { "/noise", "/yamux/1.0.0" }));
            Assert.ThrowsAsync<MultistreamException>(() => handled);
        }
    }

    [Test]
    public async Task Listener_AnswersLs_WithNestedMessages_AsGoAndJsDo()
    {
        var stream = new ScriptedStream(Concat(Header, Message("ls"), Message("/a")));

        Assert.That(await MultistreamSelect.HandleAsync(stream, ["/a", "/bc"], Token), Is.EqualTo("/a"));

        var list = Concat(Message("/a"), Message("/bc"), "\n"u8.ToArray());
        var expected = Concat(Header, [(byte)list.Length], list, Message("/a"));
        Assert.That(stream.Written, Is.EqualTo(expected));
    }

    [Test]
    public void Listener_RejectsWrongHeader()
    {
        var stream = new ScriptedStream(Concat(Message("/multistream/2.0.0"), Message("/a")));
        var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.HandleAsync(stream, ["/a"], Token));
        Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.WrongHeader));
    }

    [Test]
    public void Dialer_RejectsWrongHeader()
    {
        var stream = new ScriptedStream(Concat(Message("na"), Message("/a")));
        var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.SelectAsync(stream, ["/a"], Token));
        Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.WrongHeader));
    }

    [Test]
    public void Dialer_RejectsAnswer_ThatIsNeitherEchoNorNa()
    {
        var stream = new ScriptedStream(Concat(Header, Message("/b")));
        var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.SelectAsync(stream, ["/a"], Token));
        Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.MalformedMessage));
    }

    [Test]
    public void Listener_RejectsMessage_WithoutTrailingNewline()
    {
        var stream = new ScriptedStream(Concat(Header, [2], "/a"u8.ToArray()));
        var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.HandleAsync(stream, ["/a"], Token));
        Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.MalformedMessage));
    }

    [Test]
    public void Listener_RejectsEmptyMessage()
    {
        var stream = new ScriptedStream(Concat(Header, [0]));
        var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.HandleAsync(stream, ["/a"], Token));
        Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.MalformedMessage));
    }

    [Test]
    public void Listener_RejectsMessage_ThatIsNotUtf8()
    {
        var stream = new ScriptedStream(Concat(Header, [3, 0xC3, 0x28, (byte)'\n']));
        var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.HandleAsync(stream, ["/a"], Token));
        Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.MalformedMessage));
    }

    [Test]
    public void Listener_RejectsALengthPrefixOfTenContinuationBytes_AsMalformed()
    {
        var stream = new ScriptedStream(Concat(Header, Enumerable.Repeat((byte)0xFF, 10).ToArray(), [1]));
        var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.HandleAsync(stream, ["/a"], Token));
        Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.MalformedMessage));
        Assert.That(e.Message, Does.Contain("overflows"));
    }

    [Test]
    public void Listener_RejectsALengthPrefixThatIsNotMinimallyEncoded_AsMalformed()
    {
        // 0x83 0x00 is 3 in two bytes: multiformats' unsigned varint must be minimal.
        var stream = new ScriptedStream(Concat(Header, [0x83, 0x00], "/a\n"u8.ToArray()));
        var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.HandleAsync(stream, ["/a"], Token));
        Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.MalformedMessage));
        Assert.That(e.Message, Does.Contain("minimally"));
    }

    [TestCase(1025UL)]
    [TestCase(1UL << 32)]
    [TestCase(1UL << 63)]
    [TestCase(ulong.MaxValue)]
    public void BothSides_RejectHugeLengthPrefix_WithoutReadingTheBody(ulong length)
    {
        var listenerStream = new ScriptedStream(Concat(Header, Varint.Encode(length), new byte[16]));
        var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.HandleAsync(listenerStream, ["/a"], Token));
        Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.TooLong));
        Assert.That(listenerStream.Consumed, Is.EqualTo(Header.Length + Varint.GetLength(length)));

        var dialerStream = new ScriptedStream(Concat(Varint.Encode(length), new byte[16]));
        e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.SelectAsync(dialerStream, ["/a"], Token));
        Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.TooLong));
    }

    [Test]
    public async Task Listener_AcceptsProposal_OfExactlyMaxMessageLength()
    {
        var longest = "/" + new string('x', MultistreamSelect.MaxMessageLength - 2);
        var stream = new ScriptedStream(Concat(Header, Message(longest)));
        Assert.That(await MultistreamSelect.HandleAsync(stream, [longest], Token), Is.EqualTo(longest));
    }

    [Test]
    public void Select_RefusesProtocolIds_ThatCannotBeSent()
    {
        var stream = new ScriptedStream([]);
        Assert.ThrowsAsync<ArgumentException>(() => MultistreamSelect.SelectAsync(stream, [], Token));
        Assert.ThrowsAsync<ArgumentException>(() => MultistreamSelect.SelectAsync(stream, ["/a\n"], Token));
        Assert.ThrowsAsync<ArgumentException>(() => MultistreamSelect.SelectAsync(stream, ["na"], Token));
        Assert.ThrowsAsync<ArgumentException>(() => MultistreamSelect.SelectAsync(stream, [new string('x', MultistreamSelect.MaxMessageLength)], Token));
        Assert.That(stream.Writes, Is.Empty);
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(5)]
    [TestCase(19)]
    [TestCase(22)]
    public void Listener_ReportsStreamClosed_ForTruncatedInput(int keep)
    {
        var full = Concat(Header, Message("/noise"));
        var stream = new ScriptedStream(full[..keep]);
        var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.HandleAsync(stream, ["/noise"], Token));
        Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.StreamClosed));
    }

    [TestCase(0)]
    [TestCase(10)]
    [TestCase(20)]
    [TestCase(25)]
    public void Dialer_ReportsStreamClosed_ForTruncatedAnswer(int keep)
    {
        var full = Concat(Header, Message("/noise"));
        var stream = new ScriptedStream(full[..keep]);
        var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.SelectAsync(stream, ["/noise"], Token));
        Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.StreamClosed));
    }

    [Test]
    public void Listener_GivesUp_AfterTooManyProposals()
    {
        var proposals = Enumerable.Range(0, MultistreamSelect.MaxProposals + 1).Select(i => Message($"/p/{i}"));
        var stream = new ScriptedStream(Concat([Header, .. proposals]));

        var e = Assert.ThrowsAsync<MultistreamException>(() => MultistreamSelect.HandleAsync(stream, ["/a"], Token));

        Assert.That(e!.Reason, Is.EqualTo(MultistreamFailure.TooManyAttempts));
        var na = Message("na");
        Assert.That(stream.Written, Is.EqualTo(Concat([Header, .. Enumerable.Repeat(na, MultistreamSelect.MaxProposals)])));
    }

    [Test]
    public async Task Listener_AnswersNa_ToAProposalOfNa()
    {
        var stream = new ScriptedStream(Concat(Header, Message("na"), Message("/a")));
        Assert.That(await MultistreamSelect.HandleAsync(stream, ["/a", "na"], Token), Is.EqualTo("/a"));
        Assert.That(stream.Written, Is.EqualTo(Concat(Header, Message("na"), Message("/a"))));
    }

    [Test]
    public async Task BothSides_EndInMultistreamException_ForRandomInput()
    {
        var random = TestSeed.CreateRandom();
        for (var round = 0; round < 300; round++)
        {
            var noise = new byte[random.Next(0, 64)];
            random.NextBytes(noise);
            // Half the rounds get past the header so the proposal parsing sees the noise too.
            var input = random.Next(2) == 0 ? noise : Concat(Header, noise);

            await EndsInMultistreamExceptionAsync(() => MultistreamSelect.HandleAsync(new ScriptedStream(input), ["/a"], Token), $"listener, round {round}");
            await EndsInMultistreamExceptionAsync(() => MultistreamSelect.SelectAsync(new ScriptedStream(input), ["/a"], Token), $"dialer, round {round}");
        }
    }

    // Awaited here rather than through Assert.ThrowsAsync, which runs each call on a synchronous
    // adapter of its own: 600 of those were most of this test's time. Any other exception fails the test as it is.
    private static async Task EndsInMultistreamExceptionAsync<T>(Func<Task<T>> call, string what)
    {
        try
        {
            await call();
        }
        catch (MultistreamException)
        {
            return;
        }
        Assert.Fail($"{what}: no MultistreamException");
    }

    // Answers to "ls" a listener could send, each a typed failure: the list body is one message
    // nesting one message per protocol, so both levels are checked.
    [TestCase(new byte[] { 0x01, (byte)'a' }, MultistreamFailure.MalformedMessage, TestName = "List_WithoutItsTrailingNewline_IsMalformed")]
    [TestCase(new byte[] { 0x02, 0x80, (byte)'\n' }, MultistreamFailure.MalformedMessage, TestName = "List_WithATruncatedInnerLength_IsMalformed")]
    [TestCase(new byte[] { 0x0C, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, (byte)'\n' }, MultistreamFailure.MalformedMessage, TestName = "List_WithAnOverlongInnerLength_IsMalformed")]
    [TestCase(new byte[] { 0x03, 0x05, (byte)'a', (byte)'\n' }, MultistreamFailure.MalformedMessage, TestName = "List_WithAnInnerMessageLongerThanTheList_IsMalformed")]
    [TestCase(new byte[] { 0x80, 0x80, 0x40 }, MultistreamFailure.TooLong, TestName = "List_AnnouncingAMegabyte_IsTooLong")]
    [TestCase(new byte[] { 0x0A, (byte)'a' }, MultistreamFailure.StreamClosed, TestName = "List_CutOffByTheStreamsEnd_IsStreamClosed")]
    [TestCase(new byte[0], MultistreamFailure.StreamClosed, TestName = "List_MissingAfterTheHeader_IsStreamClosed")]
    public async Task ListAsync_RefusesABadAnswer_WithATypedFailure(byte[] answer, MultistreamFailure expected)
    {
        var (dialer, listener) = DuplexStreamPair.Create();
        using (dialer)
        {
            await listener.WriteAsync(Concat(Header, answer), Token);
            listener.Dispose();
            await Assert.ThatAsync(() => MultistreamSelect.ListAsync(dialer, Token),
                Throws.TypeOf<MultistreamException>().With.Property(nameof(MultistreamException.Reason)).EqualTo(expected));
        }
    }
}
