using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Noise;

namespace P2PInference.Tests.Unit.Noise;

[TestFixture]
[CancelAfter(10000)]
public sealed class NoiseLocalIdentityTests
{
    [Test]
    public void StaticKey_IsTheSame_ForEveryHandshakeOfOneIdentity()
    {
        var identity = KeyPair.Generate();
        var first = NoiseLocalIdentity.For(identity).StaticKey.PublicKey;
        var second = NoiseLocalIdentity.For(identity).StaticKey.PublicKey;

        Assert.That(second, Is.EqualTo(first));
    }

    [Test]
    public void StaticKey_Differs_BetweenIdentities()
    {
        var alice = NoiseLocalIdentity.For(KeyPair.Generate()).StaticKey.PublicKey;
        var bob = NoiseLocalIdentity.For(KeyPair.Generate()).StaticKey.PublicKey;

        Assert.That(bob, Is.Not.EqualTo(alice));
    }

    [Test]
    public void Payload_BindsTheIdentityToItsStaticKey()
    {
        var identity = KeyPair.Generate();
        var local = NoiseLocalIdentity.For(identity);

        Assert.That(NoisePayload.Verify(local.Payload, local.StaticKey.PublicKey), Is.EqualTo(identity.PublicKey));
    }

    [Test]
    public async Task RepeatedHandshakes_BetweenTheSamePeers_EachAuthenticateAndCarryData(CancellationToken cancellationToken)
    {
        var alice = KeyPair.Generate();
        var bob = KeyPair.Generate();
        for (var i = 0; i < 3; i++)
        {
            var (initiator, responder) = await NoiseTestPeers.ConnectAsync(alice, bob, cancellationToken);
            await using var _ = initiator;
            await using var __ = responder;
            await initiator.WriteAsync(new byte[] { (byte)i }, cancellationToken);
            await initiator.FlushAsync(cancellationToken);
            var received = new byte[1];
            await responder.ReadExactlyAsync(received, cancellationToken);

            Assert.Multiple(() =>
            {
                Assert.That(initiator.RemotePeer, Is.EqualTo(bob.PeerId));
                Assert.That(responder.RemotePeer, Is.EqualTo(alice.PeerId));
                Assert.That(received[0], Is.EqualTo(i));
            });
        }
    }
}
