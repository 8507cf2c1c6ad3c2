using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Protocols.Dcutr;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Tests.Unit.Protocols.Dcutr;

/// <summary>
/// Which of the addresses a peer's CONNECT names we dial: a hole punch is a dial the remote aims, so it
/// must not reach our loopback or LAN however the address is spelled.
/// </summary>
[TestFixture]
public sealed class DcutrAddressFilterTests
{
    private static async Task<List<Multiaddress>> DialableAsync(DcutrOptions options, params string[] addresses)
    {
        await using var host = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        await using var dcutr = new DcutrService(host, options);
        return dcutr.Dialable(addresses.Select(Multiaddress.Parse), PeerId.FromPublicKey(KeyPair.Generate().PublicKey));
    }

    [Test]
    public async Task PrivateHostsSpelledAsDnsNames_AreNotDialed_PublicOnesAre()
    {
        var dialable = await DialableAsync(new DcutrOptions(),
            "/dns4/127.0.0.1/tcp/4001",
            "/dns4/2130706433/tcp/4001",
            "/dns4/0x7f.1/tcp/4001",
            "/dns4/localhost/tcp/4001",
            "/dns6/::1/tcp/4001",
            "/dns4/10.0.0.1/tcp/4001",
            "/dns4/printer.local/tcp/4001",
            "/ip4/192.168.1.1/tcp/4001",
            "/ip4/203.0.113.7/tcp/4001",
            "/dns4/example.com/tcp/4001");

        Assert.That(dialable.Select(a => a.ToString()), Is.EqualTo(new[] { "/ip4/203.0.113.7/tcp/4001", "/dns4/example.com/tcp/4001" }));
    }

    [Test]
    public async Task AllowingPrivateAddresses_DialsThemAll()
    {
        var dialable = await DialableAsync(new DcutrOptions { AllowPrivateAddresses = true }, "/dns4/127.0.0.1/tcp/4001", "/ip4/10.0.0.1/tcp/4001");

        Assert.That(dialable, Has.Count.EqualTo(2));
    }
}
