using System.Security.Cryptography;
using P2PInference.Facilities.Net.Yamux;
using P2PInference.TestKit;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Yamux;

[TestFixture]
[CancelAfter(10000)]
public sealed class YamuxSessionTests
{
    private static readonly YamuxOptions NoKeepAlive = new() { KeepAliveInterval = null };

    private static (YamuxSession Client, YamuxSession Server) CreatePair(YamuxOptions? client = null, YamuxOptions? server = null)
    {
        var (a, b) = DuplexStreamPair.Create();
        return (new YamuxSession(a, isInitiator: true, client ?? NoKeepAlive), new YamuxSession(b, isInitiator: false, server ?? NoKeepAlive));
    }

    private static async Task EchoAllAsync(YamuxStream stream, CancellationToken token)
    {
        var buffer = new byte[16 * 1024];
        int read;
        while ((read = await stream.ReadAsync(buffer, token)) > 0)
        {
            await stream.WriteAsync(buffer.AsMemory(0, read), token);
        }

        await stream.CompleteWritesAsync(token);
    }

    private static async Task<byte[]> ReadToEndAsync(Stream stream, CancellationToken token)
    {
        using var memory = new MemoryStream();
        await stream.CopyToAsync(memory, token);
        return memory.ToArray();
    }

    [Test]
    public async Task OpenStream_EchoesData_WhenInitiatorOpens(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;

        await using var stream = await client.OpenStreamAsync(token);
        var accepting = server.AcceptStreamAsync(token).AsTask();
        await stream.WriteAsync("hello"u8.ToArray(), token);
        await using var inbound = await accepting;
        var echo = EchoAllAsync(inbound, token);

        await stream.CompleteWritesAsync(token);
        var reply = await ReadToEndAsync(stream, token);
        await echo;

        Assert.That(reply, Is.EqualTo("hello"u8.ToArray()));
        Assert.That(inbound.Id, Is.EqualTo(stream.Id));
    }

    [Test]
    public async Task OpenStream_EchoesData_WhenResponderOpens(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;

        await using var stream = await server.OpenStreamAsync(token);
        await stream.WriteAsync("ping"u8.ToArray(), token);
        await using var inbound = await client.AcceptStreamAsync(token);
        var echo = EchoAllAsync(inbound, token);
        await stream.CompleteWritesAsync(token);

        Assert.That(await ReadToEndAsync(stream, token), Is.EqualTo("ping"u8.ToArray()));
        await echo;
    }

    [Test]
    public async Task OpenStream_UsesOddIdsForInitiator_AndEvenIdsForResponder(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;

        var c1 = await client.OpenStreamAsync(token);
        var c2 = await client.OpenStreamAsync(token);
        var s1 = await server.OpenStreamAsync(token);

        Assert.That(new[] { c1.Id, c2.Id, s1.Id }, Is.EqualTo(new uint[] { 1, 3, 2 }));
    }

    [Test]
    public async Task Session_EchoesOnThousandConcurrentStreams(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;

        var acceptLoop = Task.Run(async () =>
        {
            var echoes = new List<Task>();
            for (var i = 0; i < 1000; i++)
            {
                var inbound = await server.AcceptStreamAsync(token);
                echoes.Add(Task.Run(async () =>
                {
                    await using (inbound)
                    {
                        await EchoAllAsync(inbound, token);
                    }
                }, token));
            }

            await Task.WhenAll(echoes);
        }, token);

        var calls = Enumerable.Range(0, 1000).Select(i => Task.Run(async () =>
        {
            await using var stream = await client.OpenStreamAsync(token);
            var payload = new byte[1000 + i];
            new Random(i).NextBytes(payload);
            await stream.WriteAsync(payload, token);
            await stream.CompleteWritesAsync(token);
            return (payload, reply: await ReadToEndAsync(stream, token));
        }, token)).ToArray();

        var results = await Task.WhenAll(calls);
        await acceptLoop;

        Assert.That(results.All(r => r.payload.AsSpan().SequenceEqual(r.reply)), Is.True);
    }

    [TestCase(YamuxOptions.DefaultWindowSize)]
    [TestCase(16 * 1024 * 1024)]
    public async Task Stream_Transfers64MiBIntact_ThroughFlowControlWindow(int maxWindow, CancellationToken token)
    {
        var options = new YamuxOptions { KeepAliveInterval = null, MaxStreamWindowSize = maxWindow };
        var (client, server) = CreatePair(options, options);
        await using var _ = client;
        await using var __ = server;
        const int total = 64 * 1024 * 1024;
        var random = TestSeed.CreateRandom();
        var chunk = new byte[100_000];
        random.NextBytes(chunk);

        var sender = Task.Run(async () =>
        {
            await using var stream = await client.OpenStreamAsync(token);
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            for (var sent = 0; sent < total; sent += chunk.Length)
            {
                var slice = chunk.AsMemory(0, Math.Min(chunk.Length, total - sent));
                chunk[0]++;
                hash.AppendData(slice.Span);
                await stream.WriteAsync(slice, token);
            }

            await stream.CompleteWritesAsync(token);
            return hash.GetHashAndReset();
        }, token);

        await using var inbound = await server.AcceptStreamAsync(token);
        using var received = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[64 * 1024];
        long count = 0;
        int read;
        while ((read = await inbound.ReadAsync(buffer, token)) > 0)
        {
            received.AppendData(buffer, 0, read);
            count += read;
        }

        Assert.That(count, Is.EqualTo(total));
        Assert.That(received.GetHashAndReset(), Is.EqualTo(await sender));
    }

    [Test]
    public async Task Streams_TransferBothWaysAtOnce_WithoutDeadlock_OverSmallConnectionBuffers(CancellationToken token)
    {
        // Both connection buffers fill up while both sides write: control frames (window updates)
        // must still get through, or the two sessions would wait on each other forever.
        var (a, b) = DuplexStreamPair.Create(new System.IO.Pipelines.PipeOptions(pauseWriterThreshold: 16 * 1024, resumeWriterThreshold: 8 * 1024, useSynchronizationContext: false));
        await using var client = new YamuxSession(a, isInitiator: true, NoKeepAlive);
        await using var server = new YamuxSession(b, isInitiator: false, NoKeepAlive);
        const int total = 2 * 1024 * 1024;

        async Task<long> PumpAsync(YamuxStream stream)
        {
            var writing = Task.Run(async () =>
            {
                var chunk = new byte[50_000];
                for (var sent = 0; sent < total; sent += chunk.Length)
                {
                    await stream.WriteAsync(chunk.AsMemory(0, Math.Min(chunk.Length, total - sent)), token);
                }

                await stream.CompleteWritesAsync(token);
            }, token);
            var received = (await ReadToEndAsync(stream, token)).LongLength;
            await writing;
            return received;
        }

        var streams = new List<Task<long>>();
        for (var i = 0; i < 4; i++)
        {
            var outbound = await client.OpenStreamAsync(token);
            await outbound.WriteAsync(new byte[1], token);
            var inbound = await server.AcceptStreamAsync(token);
            Assert.That(await inbound.ReadAsync(new byte[1], token), Is.EqualTo(1));
            streams.Add(PumpAsync(outbound));
            streams.Add(PumpAsync(inbound));
        }

        Assert.That(await Task.WhenAll(streams), Is.All.EqualTo(total));
    }

    [Test]
    public async Task CompleteWrites_RemoteReadsEof_AndOtherDirectionStillWorks(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;

        await using var stream = await client.OpenStreamAsync(token);
        await stream.WriteAsync("request"u8.ToArray(), token);
        await stream.CompleteWritesAsync(token);
        await using var inbound = await server.AcceptStreamAsync(token);

        Assert.That(await ReadToEndAsync(inbound, token), Is.EqualTo("request"u8.ToArray()));
        Assert.That(await inbound.ReadAsync(new byte[1], token), Is.Zero, "reads stay at end of stream");

        await inbound.WriteAsync("response"u8.ToArray(), token);
        await inbound.CompleteWritesAsync(token);
        Assert.That(await ReadToEndAsync(stream, token), Is.EqualTo("response"u8.ToArray()));
        Assert.That(async () => await stream.WriteAsync(new byte[1], token), Throws.InvalidOperationException);
    }

    [Test]
    public async Task Stream_IsRemovedFromSession_OnceBothSidesClosed(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;

        var stream = await client.OpenStreamAsync(token);
        await stream.CompleteWritesAsync(token);
        var inbound = await server.AcceptStreamAsync(token);
        Assert.That(await inbound.ReadAsync(new byte[1], token), Is.Zero);
        Assert.That(client.StreamCount, Is.EqualTo(1));

        await inbound.DisposeAsync();
        Assert.That(await stream.ReadAsync(new byte[1], token), Is.Zero, "disposing sends FIN");
        Assert.That(client.StreamCount, Is.Zero);
        Assert.That(server.StreamCount, Is.Zero);
    }

    [Test]
    public async Task DisposedStream_KeepsGrantingWindow_SoRemoteWriterIsNotBlocked(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;

        await using var stream = await client.OpenStreamAsync(token);
        await stream.WriteAsync(new byte[1], token);
        var inbound = await server.AcceptStreamAsync(token);
        await inbound.DisposeAsync();

        // Four windows' worth: only possible if the disposed end still returns credit.
        await stream.WriteAsync(new byte[4 * YamuxOptions.DefaultWindowSize], token);
        await stream.CompleteWritesAsync(token);
        Assert.That(await stream.ReadAsync(new byte[1], token), Is.Zero);
    }

    [Test]
    public async Task Reset_MakesBothEndsThrowStreamResetException(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;

        await using var stream = await client.OpenStreamAsync(token);
        await stream.WriteAsync("x"u8.ToArray(), token);
        await using var inbound = await server.AcceptStreamAsync(token);
        var pendingRead = inbound.ReadAsync(new byte[1], token).AsTask();
        Assert.That(await pendingRead, Is.EqualTo(1));
        var blockedRead = inbound.ReadAsync(new byte[1], token).AsTask();

        stream.Reset();

        Assert.That(async () => await blockedRead, Throws.TypeOf<YamuxStreamResetException>());
        Assert.That(async () => await inbound.WriteAsync(new byte[1], token), Throws.TypeOf<YamuxStreamResetException>()
            .With.Message.EqualTo($"yamux: yamux stream {inbound.Id} was reset by the remote"), "one protocol prefix, however often the error is thrown again");
        Assert.That(async () => await stream.ReadAsync(new byte[1], token), Throws.TypeOf<YamuxStreamResetException>());
        Assert.That(async () => await stream.WriteAsync(new byte[1], token), Throws.TypeOf<YamuxStreamResetException>());
        Assert.That(client.StreamCount, Is.Zero);
        Assert.That(server.StreamCount, Is.Zero);
    }

    [Test]
    public async Task Write_WaitsForWindow_AndHonoursCancellation(CancellationToken token)
    {
        var options = new YamuxOptions { KeepAliveInterval = null, MaxStreamWindowSize = YamuxOptions.DefaultWindowSize };
        var (client, server) = CreatePair(options, options);
        await using var _ = client;
        await using var __ = server;

        await using var stream = await client.OpenStreamAsync(token);
        await stream.WriteAsync(new byte[YamuxOptions.DefaultWindowSize], token);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(token);
        var blocked = stream.WriteAsync(new byte[1], cancel.Token).AsTask();

        Assert.That(blocked.IsCompleted, Is.False, "the remote has not read anything, so no window is left");
        await cancel.CancelAsync();
        Assert.That(async () => await blocked, Throws.InstanceOf<OperationCanceledException>());

        // Once the remote reads, the window opens again.
        await using var inbound = await server.AcceptStreamAsync(token);
        var drained = 0;
        var buffer = new byte[64 * 1024];
        while (drained < YamuxOptions.DefaultWindowSize)
        {
            drained += await inbound.ReadAsync(buffer, token);
        }

        await stream.WriteAsync("more"u8.ToArray(), token);
        Assert.That(await inbound.ReadAsync(buffer, token), Is.EqualTo(4));
    }

    [Test]
    public async Task InboundStreams_PastMaxInboundStreams_AreResetWhileOthersKeepWorking(CancellationToken token)
    {
        var (client, server) = CreatePair(server: new YamuxOptions { KeepAliveInterval = null, MaxInboundStreams = 4 });
        await using var _ = client;
        await using var __ = server;

        var open = new List<(YamuxStream Outbound, YamuxStream Inbound)>();
        for (var i = 0; i < 4; i++)
        {
            var stream = await client.OpenStreamAsync(token);
            await stream.WriteAsync(new byte[] { (byte)i }, token);
            open.Add((stream, await server.AcceptStreamAsync(token)));
        }

        var excess = await client.OpenStreamAsync(token);
        Assert.That(async () => await excess.ReadAsync(new byte[1], token), Throws.TypeOf<YamuxStreamResetException>());

        foreach (var (outbound, inbound) in open)
        {
            var one = new byte[1];
            Assert.That(await inbound.ReadAsync(one, token), Is.EqualTo(1));
            await inbound.WriteAsync(one, token);
            Assert.That(await outbound.ReadAsync(new byte[1], token), Is.EqualTo(1));
        }

        Assert.That(client.IsClosed, Is.False);
        Assert.That(server.IsClosed, Is.False);
        Assert.That(server.StreamCount, Is.EqualTo(4));
    }

    [Test]
    public async Task InboundStreams_PastAcceptBacklog_AreReset(CancellationToken token)
    {
        var (client, server) = CreatePair(server: new YamuxOptions { KeepAliveInterval = null, MaxAcceptBacklog = 2 });
        await using var _ = client;
        await using var __ = server;

        await client.OpenStreamAsync(token);
        await client.OpenStreamAsync(token);
        var third = await client.OpenStreamAsync(token);

        Assert.That(async () => await third.ReadAsync(new byte[1], token), Throws.TypeOf<YamuxStreamResetException>());
        await server.AcceptStreamAsync(token);
        var fourth = await client.OpenStreamAsync(token);
        await fourth.WriteAsync("ok"u8.ToArray(), token);
        await server.AcceptStreamAsync(token);
        var accepted = await server.AcceptStreamAsync(token);
        Assert.That(accepted.Id, Is.EqualTo(fourth.Id));
    }

    [Test]
    public async Task GoAway_StopsNewStreams_WhileExistingStreamsFinish(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;
        await using var stream = await client.OpenStreamAsync(token);
        await stream.WriteAsync("before"u8.ToArray(), token);
        await using var inbound = await server.AcceptStreamAsync(token);

        await server.GoAwayAsync(token);
        // The pong is written after the go-away, so once it arrives the client has seen the go-away.
        await client.PingAsync(token);

        Assert.That(async () => await client.OpenStreamAsync(token), Throws.TypeOf<YamuxException>());
        Assert.That(async () => await server.OpenStreamAsync(token), Throws.TypeOf<YamuxException>());

        var echo = EchoAllAsync(inbound, token);
        await stream.WriteAsync(" and after"u8.ToArray(), token);
        await stream.CompleteWritesAsync(token);
        Assert.That(await ReadToEndAsync(stream, token), Is.EqualTo("before and after"u8.ToArray()));
        await echo;
        Assert.That(client.IsClosed, Is.False);
    }

    [Test]
    public async Task Ping_ReturnsRoundTripTime(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;

        var rtt = await client.PingAsync(token);
        var back = await server.PingAsync(token);

        Assert.That(rtt, Is.GreaterThanOrEqualTo(TimeSpan.Zero));
        Assert.That(back, Is.GreaterThanOrEqualTo(TimeSpan.Zero));
    }

    [Test]
    public async Task DisposeAsync_EndsBothSessions_AndResetsOpenStreams(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var __ = server;
        var stream = await client.OpenStreamAsync(token);
        await stream.WriteAsync("x"u8.ToArray(), token);
        var inbound = await server.AcceptStreamAsync(token);
        Assert.That(await inbound.ReadAsync(new byte[1], token), Is.EqualTo(1));

        await client.DisposeAsync();

        Assert.That(client.IsClosed, Is.True);
        Assert.That(async () => await stream.ReadAsync(new byte[1], token), Throws.TypeOf<YamuxStreamResetException>());
        Assert.That(async () => await client.OpenStreamAsync(token), Throws.TypeOf<YamuxException>());
        Assert.That(async () => await client.AcceptStreamAsync(token), Throws.TypeOf<YamuxException>());
        await server.Completion.WaitAsync(token);
        Assert.That(server.IsClosed, Is.True);
        Assert.That(async () => await inbound.ReadAsync(new byte[1], token), Throws.TypeOf<YamuxStreamResetException>());
    }

    [Test]
    public async Task Stream_ReadsTheWholeAnswerThenEnd_WhenTheRemoteFinishedAndClosedBeforeItWasRead(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        var answer = new byte[100_000];
        new Random(1).NextBytes(answer);

        // Answer and FIN, then go-away and the connection's end: the caller's session reads them all and closes.
        await using var stream = await AnsweredThenClosedAsync(client, server, inbound => inbound.WriteAndCompleteAsync(answer, token).AsTask(), token);

        Assert.That(await stream.WaitReadableAsync(token), Is.True, "what the remote sent before its FIN is still to be read");
        var received = await ReadToEndAsync(stream, token);
        Assert.That(received.AsSpan().SequenceEqual(answer), Is.True, "the whole answer, then end of stream");
        Assert.That(await stream.ReadAsync(new byte[1], token), Is.Zero, "reads stay at end of stream");
        Assert.That(stream.HeldSegments, Is.EqualTo((0, 0L)), "the drained arrays went back to the pool");
        Assert.That(async () => await stream.WriteAsync(new byte[1], token), Throws.TypeOf<YamuxStreamResetException>(),
            "the session is gone: writes fail as before");
    }

    [Test]
    public async Task Stream_FailsWithReset_WhenTheSessionClosesBeforeTheRemotesFin(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;

        // Part of an answer, no FIN: the connection ends with the answer cut short.
        await using var stream = await AnsweredThenClosedAsync(client, server, inbound => inbound.WriteAsync(new byte[1000], token).AsTask(), token);

        Assert.That(async () => await stream.ReadAsync(new byte[1000], token), Throws.TypeOf<YamuxStreamResetException>()
            .With.InnerException.TypeOf<YamuxException>());
        Assert.That(stream.HeldSegments, Is.EqualTo((0, 0L)), "a truncated answer is dropped when the session ends");
    }

    [Test]
    public async Task Stream_ResetLocally_DropsWhatTheRemoteFinishedBeforeTheSessionClosed(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var stream = await AnsweredThenClosedAsync(client, server, inbound => inbound.WriteAndCompleteAsync(new byte[1000], token).AsTask(), token);

        stream.Reset();

        Assert.That(stream.HeldSegments, Is.EqualTo((0, 0L)));
        Assert.That(async () => await stream.ReadAsync(new byte[1], token), Throws.TypeOf<YamuxStreamResetException>());
    }

    /// <summary>
    /// A client stream whose request the server read and then answered with <paramref name="answer"/>, after which the
    /// server closed its whole session; returns once the client's session has ended too. The client keeps its write side
    /// open while it waits for the answer, as the RPC client does.
    /// </summary>
    private static async Task<YamuxStream> AnsweredThenClosedAsync(YamuxSession client, YamuxSession server, Func<YamuxStream, Task> answer,
        CancellationToken token)
    {
        var stream = await client.OpenStreamAsync(token);
        await stream.WriteAsync("request"u8.ToArray(), token);
        var inbound = await server.AcceptStreamAsync(token);
        await inbound.ReadExactlyAsync(new byte[7], token);
        await answer(inbound);
        await server.DisposeAsync();
        await Ended(client);
        return stream;
    }

    /// <summary>Waits until the session has ended, however: the remote's close may also fail its last writes.</summary>
    private static async Task Ended(YamuxSession session)
    {
        try
        {
            await session.Completion;
        }
        catch (YamuxException)
        {
            // Only that it ended matters here.
        }
    }

    [Test]
    public async Task AcceptStream_Throws_WhenSessionClosesWhileWaiting(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        var accepting = server.AcceptStreamAsync(token).AsTask();

        await server.DisposeAsync();

        Assert.That(async () => await accepting, Throws.TypeOf<YamuxException>());
    }

    [Test]
    public async Task OpenStream_WithSynWithFirstWrite_ReachesTheRemoteWithItsFirstWrite(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;

        await using var stream = await client.OpenStreamAsync(synWithFirstWrite: true, token);
        var accepting = server.AcceptStreamAsync(token).AsTask();
        await stream.WriteAsync("hello"u8.ToArray(), token);
        await using var inbound = await accepting;
        var data = new byte[5];
        await inbound.ReadExactlyAsync(data, token);

        Assert.That(data, Is.EqualTo("hello"u8.ToArray()));
        Assert.That(inbound.Id, Is.EqualTo(stream.Id));
    }

    [Test]
    public async Task OpenStream_WithSynWithFirstWrite_IsAnnouncedByTheNextFrameOfTheSession(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;

        await using var stream = await client.OpenStreamAsync(synWithFirstWrite: true, token);
        await client.PingAsync(token);

        Assert.That(server.StreamCount, Is.EqualTo(1));
    }

    [Test]
    public async Task WriteAndComplete_DeliversTheDataThenTheEnd(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;

        await using var stream = await client.OpenStreamAsync(token);
        var accepting = server.AcceptStreamAsync(ackWithFirstWrite: true, token).AsTask();
        await stream.WriteAsync("question"u8.ToArray(), token);
        await using var inbound = await accepting;
        await inbound.ReadExactlyAsync(new byte[8], token);
        await inbound.WriteAndCompleteAsync("answer"u8.ToArray(), token);

        Assert.That(await ReadToEndAsync(stream, token), Is.EqualTo("answer"u8.ToArray()));
        Assert.That(async () => await inbound.WriteAsync("more"u8.ToArray(), token), Throws.InstanceOf<InvalidOperationException>());
    }

    [Test]
    public async Task DataAvailable_TellsWhetherAReadWouldReturnAtOnce(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;

        await using var stream = await client.OpenStreamAsync(token);
        var accepting = server.AcceptStreamAsync(token).AsTask();
        await stream.WriteAsync("x"u8.ToArray(), token);
        await using var inbound = await accepting;
        await client.PingAsync(token);
        Assert.That(inbound.DataAvailable, Is.True);

        await inbound.ReadExactlyAsync(new byte[1], token);
        Assert.That(inbound.DataAvailable, Is.False);
    }

    [Test]
    public async Task Stream_SynchronousAndArrayOverloads_CarryTheSameBytes(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var _ = client;
        await using var __ = server;
        await using var stream = await client.OpenStreamAsync(token);
        var accepting = server.AcceptStreamAsync(token).AsTask();

        stream.Write("abc"u8.ToArray(), 0, 3);
        await stream.WriteAsync("defg"u8.ToArray(), 0, 4, token);
        stream.Flush();
        await stream.FlushAsync(token);
        await using var inbound = await accepting;

        var received = new byte[7];
        var total = inbound.Read(received, 0, 3);
        while (total < 5) total += inbound.Read(received.AsSpan(total, 5 - total));
        while (total < 7) total += await inbound.ReadAsync(received, total, 7 - total, token);

        Assert.That(received, Is.EqualTo("abcdefg"u8.ToArray()));
    }

    [Test]
    public async Task Stream_Seeking_IsNotSupported(CancellationToken token)
    {
        var (client, server) = CreatePair();
        await using var clientSession = client;
        await using var serverSession = server;
        await using var stream = await client.OpenStreamAsync(token);

        Assert.Multiple(() =>
        {
            Assert.That((stream.CanRead, stream.CanWrite, stream.CanSeek), Is.EqualTo((true, true, false)));
            Assert.Throws<NotSupportedException>(() => _ = stream.Length);
            Assert.Throws<NotSupportedException>(() => _ = stream.Position);
            Assert.Throws<NotSupportedException>(() => stream.Position = 1);
            Assert.Throws<NotSupportedException>(() => stream.Seek(0, SeekOrigin.Begin));
            Assert.Throws<NotSupportedException>(() => stream.SetLength(1));
        });
    }
}
