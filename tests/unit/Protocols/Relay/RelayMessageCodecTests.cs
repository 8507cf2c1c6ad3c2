using Google.Protobuf;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Protocols.Relay;
using P2PInference.TestKit;
using Proto = P2PInference.Facilities.Net.Protocols.Relay.Proto;

namespace P2PInference.Tests.Unit.Protocols.Relay;

[CancelAfter(10000)]
public sealed class RelayMessageCodecTests
{
    private static CancellationToken Token => TestContext.CurrentContext.CancellationToken;

    private static readonly Multiaddress RelayTcp = Multiaddress.Parse("/ip4/198.51.100.7/tcp/4001");

    private static byte[] Framed(IMessage message) => [.. Varint.Encode((ulong)message.CalculateSize()), .. message.ToByteArray()];

    private static PeerId NewPeer() => KeyPair.FromRandom(TestSeed.CreateRandom()).PeerId;

    [Test]
    public async Task ReserveAnswer_RoundTrips_InOneWrite()
    {
        var relay = NewPeer();
        var expires = DateTimeOffset.FromUnixTimeSeconds(1_900_000_000);
        var sent = new HopMessage(HopMessageType.Status,
            Reservation: new RelayReservationInfo(expires, [RelayTcp.WithPeerId(relay)], new byte[] { 1, 2, 3 }),
            Limit: new RelayLimit(TimeSpan.FromMinutes(2), 131072), Status: RelayStatus.Ok);
        var stream = new ScriptedStream([]);
        await RelayMessageCodec.WriteAsync(stream, sent, Token);

        var read = await RelayMessageCodec.ReadHopAsync(new ScriptedStream(stream.Written), Token);

        Assert.That(stream.Writes, Has.Count.EqualTo(1), "prefix and body leave in one write");
        Assert.That(read.Type, Is.EqualTo(HopMessageType.Status));
        Assert.That(read.Status, Is.EqualTo(RelayStatus.Ok));
        Assert.That(read.Limit, Is.EqualTo(sent.Limit));
        Assert.That(read.Reservation!.Expires, Is.EqualTo(expires));
        Assert.That(read.Reservation.Addresses, Is.EqualTo(new[] { RelayTcp.WithPeerId(relay) }));
        Assert.That(read.Reservation.Voucher.ToArray(), Is.EqualTo(new byte[] { 1, 2, 3 }));
    }

    [Test]
    public async Task StopConnect_RoundTrips_WithThePeerAndLimit()
    {
        var source = NewPeer();
        var stream = new ScriptedStream([]);
        await RelayMessageCodec.WriteAsync(stream, new StopMessage(StopMessageType.Connect, new RelayPeerInfo(source, [RelayTcp]), new RelayLimit(null, 4096)), Token);

        var read = await RelayMessageCodec.ReadStopAsync(new ScriptedStream(stream.Written), Token);

        Assert.That(read.Type, Is.EqualTo(StopMessageType.Connect));
        Assert.That(read.Peer!.Id, Is.EqualTo(source));
        Assert.That(read.Peer.Addresses, Is.EqualTo(new[] { RelayTcp }));
        Assert.That(read.Limit, Is.EqualTo(new RelayLimit(null, 4096)));
        Assert.That(read.Status, Is.Null);
    }

    [Test]
    public async Task WireValues_AreTheSpecs()
    {
        var stream = new ScriptedStream([]);
        await RelayMessageCodec.WriteAsync(stream, new HopMessage(HopMessageType.Status, Limit: new RelayLimit(TimeSpan.FromSeconds(90.2), 10), Status: RelayStatus.NoReservation), Token);

        var proto = Proto.HopMessage.Parser.ParseFrom(stream.Written.AsSpan(1));

        Assert.That((int)proto.Type, Is.EqualTo(2));
        Assert.That((int)proto.Status, Is.EqualTo(204));
        Assert.That(proto.Limit.Duration, Is.EqualTo(91), "whole seconds, rounded up");
        Assert.That(proto.Limit.Data, Is.EqualTo(10));
        Assert.That(Enum.GetValues<RelayStatus>().Select(s => (int)s),
            Is.EqualTo(new[] { 0, 100, 200, 201, 202, 203, 204, 400, 401 }));
    }

    [Test]
    public void TruncatedMessage_IsEndOfStream_AtEveryCut()
    {
        var bytes = Framed(new Proto.HopMessage
        {
            Type = Proto.HopMessage.Types.Type.Connect,
            Peer = new Proto.Peer { Id = ByteString.CopyFrom(NewPeer().ToByteArray()) },
        });
        for (var cut = 0; cut < bytes.Length; cut++)
        {
            var truncated = bytes[..cut];
            Assert.That(async () => await RelayMessageCodec.ReadHopAsync(new ScriptedStream(truncated), Token),
                Throws.InstanceOf<EndOfStreamException>(), $"cut at {cut}");
        }
    }

    [Test]
    public void OversizedPrefix_IsRefused_BeforeReadingTheBody()
    {
        var stream = new ScriptedStream([.. Varint.Encode(RelayMessageCodec.MaxMessageLength + 1), 0, 0, 0]);

        Assert.That(async () => await RelayMessageCodec.ReadHopAsync(stream, Token), Throws.InstanceOf<MessageTooLargeException>());
        Assert.That(stream.Consumed, Is.LessThanOrEqualTo(Varint.MaxLength));
    }

    [Test]
    public void Writing_MoreThanTheLimit_IsRefused()
    {
        var addresses = Enumerable.Range(0, 600).Select(i => Multiaddress.Parse($"/ip4/10.0.{i / 256}.{i % 256}/tcp/4001")).ToArray();
        var message = new HopMessage(HopMessageType.Status, Reservation: new RelayReservationInfo(DateTimeOffset.UnixEpoch, addresses, ReadOnlyMemory<byte>.Empty), Status: RelayStatus.Ok);

        Assert.That(async () => await RelayMessageCodec.WriteAsync(new ScriptedStream([]), message, Token), Throws.ArgumentException);
    }

    [Test]
    public void MissingType_IsMalformed()
    {
        Assert.That(() => RelayMessageCodec.ParseHop([]), Throws.InstanceOf<MalformedMessageException>());
        Assert.That(() => RelayMessageCodec.ParseStop([]), Throws.InstanceOf<MalformedMessageException>());
    }

    [TestCase(7)]
    [TestCase(-1)]
    public void UndefinedType_IsARelayProtocolError(int type)
    {
        var body = new Proto.HopMessage { Type = (Proto.HopMessage.Types.Type)type }.ToByteArray();

        var error = Assert.Throws<RelayProtocolException>(() => RelayMessageCodec.ParseHop(body));
        Assert.That(error!.Status, Is.EqualTo(RelayStatus.MalformedMessage));
    }

    [Test]
    public void UndefinedStatus_IsARelayProtocolError()
    {
        var body = new Proto.StopMessage { Type = Proto.StopMessage.Types.Type.Status, Status = (Proto.Status)150 }.ToByteArray();

        Assert.That(() => RelayMessageCodec.ParseStop(body), Throws.TypeOf<RelayProtocolException>().With.Message.Contains("150"));
    }

    [Test]
    public void MalformedPeerId_IsARelayProtocolError()
    {
        var body = new Proto.HopMessage
        {
            Type = Proto.HopMessage.Types.Type.Connect,
            Peer = new Proto.Peer { Id = ByteString.CopyFrom(1, 2, 3) },
        }.ToByteArray();

        Assert.That(() => RelayMessageCodec.ParseHop(body), Throws.TypeOf<RelayProtocolException>());
    }

    [Test]
    public void UnparseableAddresses_AreSkipped()
    {
        var peer = NewPeer();
        var body = new Proto.HopMessage
        {
            Type = Proto.HopMessage.Types.Type.Connect,
            Peer = new Proto.Peer { Id = ByteString.CopyFrom(peer.ToByteArray()), Addrs = { ByteString.CopyFrom(0xff, 0xff), ByteString.CopyFrom(RelayTcp.Bytes) } },
        }.ToByteArray();

        var message = RelayMessageCodec.ParseHop(body);

        Assert.That(message.Peer!.Addresses, Is.EqualTo(new[] { RelayTcp }));
    }

    [Test]
    public void RandomInput_OnlyEverFailsWithIOExceptions()
    {
        var random = TestSeed.CreateRandom();
        var outcomes = new Dictionary<string, int>();
        for (var i = 0; i < 2000; i++)
        {
            var bytes = new byte[random.Next(0, 64)];
            random.NextBytes(bytes);
            foreach (var parse in new Func<byte[], object>[] { b => RelayMessageCodec.ParseHop(b), b => RelayMessageCodec.ParseStop(b) })
            {
                string outcome;
                try
                {
                    parse(bytes);
                    outcome = "parsed";
                }
                catch (IOException e) when (e is MalformedMessageException or RelayProtocolException)
                {
                    outcome = e.GetType().Name;
                }
                outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            }
        }
        Assert.That(outcomes.Keys, Does.Contain(nameof(MalformedMessageException)));
    }

    [Test]
    public async Task RandomFramedInput_OnlyEverFailsWithIOExceptions()
    {
        var random = TestSeed.CreateRandom();
        for (var i = 0; i < 500; i++)
        {
            var bytes = new byte[random.Next(0, 80)];
            random.NextBytes(bytes);
            try
            {
                await RelayMessageCodec.ReadHopAsync(new ScriptedStream(bytes), Token);
            }
            catch (IOException)
            {
            }
        }
        Assert.Pass("no exception other than IOException escaped");
    }
}
