using Google.Protobuf;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Plaintext;
using P2PInference.Facilities.Net.Plaintext.Proto;
using P2PInference.TestKit;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Plaintext;

[TestFixture]
[CancelAfter(10000)]
public sealed class PlaintextHandshakeTests
{
    private static readonly KeyPair Alice = Key(1);
    private static readonly KeyPair Bob = Key(2);
    private static readonly KeyPair Mallory = Key(3);

    [Test]
    public async Task Handshake_BothSidesLearnEachOthersPeerIdAndKey(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiator = PlaintextHandshake.InitiateAsync(a, Alice, Bob.PeerId, cancellationToken);
        var responder = await PlaintextHandshake.RespondAsync(b, Bob, cancellationToken);
        var dialer = await initiator;

        Assert.Multiple(() =>
        {
            Assert.That(dialer.RemotePeer, Is.EqualTo(Bob.PeerId));
            Assert.That(dialer.RemotePublicKey, Is.EqualTo(Bob.PublicKey));
            Assert.That(responder.RemotePeer, Is.EqualTo(Alice.PeerId));
            Assert.That(responder.RemotePublicKey, Is.EqualTo(Alice.PublicKey));
        });
    }

    [Test]
    public async Task Handshake_LeavesTheStreamReadyForTheNextBytes_WhenBothSidesWriteAtOnce(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiator = PlaintextHandshake.InitiateAsync(a, Alice, null, cancellationToken);
        var responder = await PlaintextHandshake.RespondAsync(b, Bob, cancellationToken);
        var dialer = await initiator;

        await dialer.Stream.WriteAsync("hello"u8.ToArray(), cancellationToken);
        await dialer.Stream.FlushAsync(cancellationToken);
        var received = new byte[5];
        await responder.Stream.ReadExactlyAsync(received, cancellationToken);

        Assert.That(received, Is.EqualTo("hello"u8.ToArray()));
    }

    [Test]
    public async Task Handshake_Fails_WhenRemoteIsNotTheExpectedPeer(CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        var initiator = PlaintextHandshake.InitiateAsync(a, Alice, Mallory.PeerId, cancellationToken);
        _ = PlaintextHandshake.RespondAsync(b, Bob, cancellationToken);

        var failure = Assert.ThrowsAsync<PlaintextException>(async () => await initiator);
        Assert.That(failure!.Message, Does.Contain("dialled"));
        Assert.That(failure.Protocol, Is.EqualTo("plaintext"));
    }

    [Test]
    public async Task Handshake_Fails_WhenIdDoesNotBelongToTheKey(CancellationToken cancellationToken)
    {
        var exchange = new Exchange
        {
            Id = ByteString.CopyFrom(Mallory.PeerId.Bytes),
            Pubkey = Facilities.Identity.Proto.PublicKey.Parser.ParseFrom(Alice.PublicKey.ToProtobuf()),
        };

        var failure = await RespondToAsync(Framed(exchange.ToByteArray()), cancellationToken);

        Assert.That(failure.Message, Does.Contain("does not belong"));
    }

    [Test]
    public async Task Handshake_Fails_WhenKeyIsMissing(CancellationToken cancellationToken)
    {
        var exchange = new Exchange { Id = ByteString.CopyFrom(Alice.PeerId.Bytes) };

        var failure = await RespondToAsync(Framed(exchange.ToByteArray()), cancellationToken);

        Assert.That(failure.Message, Does.Contain("lacks"));
    }

    [Test]
    public async Task Handshake_Fails_WhenStreamEndsBeforeTheMessage(CancellationToken cancellationToken)
    {
        var failure = await RespondToAsync([], cancellationToken);

        Assert.That(failure.Message, Does.Contain("ended"));
    }

    [Test]
    public async Task Handshake_Fails_WhenMessageIsTruncated(CancellationToken cancellationToken)
    {
        var whole = Framed(ValidExchange(Alice));

        for (var cut = 1; cut < whole.Length; cut += 7)
        {
            var failure = await RespondToAsync(whole[..cut], cancellationToken);
            Assert.That(failure.Message, Does.Contain("ended"), $"cut at {cut} of {whole.Length}");
        }
    }

    [TestCase(0UL)]
    [TestCase((ulong)PlaintextHandshake.MaxMessageLength + 1)]
    [TestCase(1UL << 31)]
    [TestCase(1UL << 63)]
    [TestCase(ulong.MaxValue)]
    public async Task Handshake_Fails_WhenLengthPrefixIsOutOfBounds(ulong length, CancellationToken cancellationToken)
    {
        // No body follows: the length alone must be refused, before anything waits for or allocates it.
        var failure = await RespondToAsync(Varint.Encode(length), cancellationToken);

        Assert.That(failure.Message, Does.Contain("exchange message of"));
    }

    [Test]
    public async Task Handshake_Fails_WhenLengthPrefixOverflows(CancellationToken cancellationToken)
    {
        var failure = await RespondToAsync([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], cancellationToken);

        Assert.That(failure.Message, Does.Contain("length prefix"));
    }

    [Test]
    public async Task Handshake_FailsWithTypedError_OnRandomInput(CancellationToken cancellationToken)
    {
        var random = TestSeed.CreateRandom();
        for (var i = 0; i < 200; i++)
        {
            var body = new byte[random.Next(1, 300)];
            random.NextBytes(body);
            // Half framed correctly (random protobuf), half raw random bytes (random prefix too).
            var input = i % 2 == 0 ? Framed(body) : body;

            Assert.That(await RespondToAsync(input, cancellationToken), Is.InstanceOf<PlaintextException>());
        }
    }

    [Test]
    public async Task Handshake_FailsWithTypedError_OnRandomFieldsInAWellFormedExchange(CancellationToken cancellationToken)
    {
        var random = TestSeed.CreateRandom();
        for (var i = 0; i < 100; i++)
        {
            var id = new byte[random.Next(0, 60)];
            var data = new byte[random.Next(0, 60)];
            random.NextBytes(id);
            random.NextBytes(data);
            var exchange = new Exchange
            {
                Id = ByteString.CopyFrom(id),
                Pubkey = new Facilities.Identity.Proto.PublicKey { Type = (Facilities.Identity.Proto.KeyType)random.Next(0, 5), Data = ByteString.CopyFrom(data) },
            };

            Assert.That(await RespondToAsync(Framed(exchange.ToByteArray()), cancellationToken), Is.InstanceOf<PlaintextException>());
        }
    }

    [Test]
    public void Handshake_IsCancelled_WhenTheRemoteNeverAnswers()
    {
        using var cts = new CancellationTokenSource();
        var (a, _) = DuplexStreamPair.Create();
        var initiator = PlaintextHandshake.InitiateAsync(a, Alice, null, cts.Token);
        cts.Cancel();

        Assert.That(async () => await initiator, Throws.InstanceOf<OperationCanceledException>());
    }

    /// <summary>Feeds <paramref name="input"/> then end of stream to a listener and returns its error.</summary>
    private static async Task<PlaintextException> RespondToAsync(byte[] input, CancellationToken cancellationToken)
    {
        var (a, b) = DuplexStreamPair.Create();
        await a.WriteAsync(input, cancellationToken);
        await a.FlushAsync(cancellationToken);
        a.Dispose();
        try
        {
            await PlaintextHandshake.RespondAsync(b, Bob, cancellationToken);
        }
        catch (PlaintextException e)
        {
            return e;
        }
        Assert.Fail("the exchange was accepted");
        throw new InvalidOperationException();
    }

    private static byte[] ValidExchange(KeyPair key) => new Exchange
    {
        Id = ByteString.CopyFrom(key.PeerId.Bytes),
        Pubkey = Facilities.Identity.Proto.PublicKey.Parser.ParseFrom(key.PublicKey.ToProtobuf()),
    }.ToByteArray();

    private static byte[] Framed(byte[] body) => [.. Varint.Encode((ulong)body.Length), .. body];

    private static KeyPair Key(byte seed)
    {
        var bytes = new byte[32];
        Array.Fill(bytes, seed);
        return KeyPair.FromSeed(bytes);
    }
}
