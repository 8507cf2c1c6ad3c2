using System.Net;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.TestKit;

namespace P2PInference.Tests.Unit.Addressing;

public sealed class MultiaddressTests
{
    private const string Ed25519PeerId = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq";
    private const string Sha256PeerId = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";

    // Binary forms per the multiaddr spec (multiformats/multiaddr): varint code, then the value
    // (fixed size, or varint length + bytes).
    [TestCase("/ip4/127.0.0.1/udp/1234", "047f000001910204d2")]
    [TestCase("/ip4/127.0.0.1/tcp/4001", "047f000001060fa1")]
    [TestCase("/ip4/0.0.0.0/tcp/0", "04000000000600 00")]
    [TestCase("/ip4/255.255.255.255/tcp/65535", "04ffffffff06ffff")]
    [TestCase("/ip6/::1/tcp/4001", "2900000000000000000000000000000001060fa1")]
    [TestCase("/ip6/2001:db8::1/tcp/80", "2920010db8000000000000000000000001060050")]
    [TestCase("/dns/example.com/tcp/443", "350b6578616d706c652e636f6d0601bb")]
    [TestCase("/dns4/example.com/tcp/443", "360b6578616d706c652e636f6d0601bb")]
    [TestCase("/dns6/example.com/tcp/443", "370b6578616d706c652e636f6d0601bb")]
    [TestCase("/dnsaddr/bootstrap.libp2p.io", "3813626f6f7473747261702e6c69627032702e696f")]
    [TestCase("/memory/node-a", "890606 6e6f64652d61")]
    [TestCase("/p2p/" + Sha256PeerId, "a503221220 9dff3b17d74cf4d38a50d8b6383e92d181a10395a5e73a726dcccbd21bf6f0b9")]
    [TestCase("/p2p/" + Ed25519PeerId, "a503260024080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")]
    [TestCase("/ip4/1.2.3.4/tcp/80/p2p/" + Sha256PeerId, "040102030406 0050 a503221220 9dff3b17d74cf4d38a50d8b6383e92d181a10395a5e73a726dcccbd21bf6f0b9")]
    [TestCase("/ip4/127.0.0.1/udp/4001/quic-v1", "047f0000019102 0fa1 cd03")]
    [TestCase("/ip4/127.0.0.1/tcp/4001/ws", "047f000001060fa1dd03")]
    [TestCase("/p2p-circuit", "a202")]
    [TestCase("/", "")]
    public void TextAndBinary_RoundTrip_MatchTheSpec(string text, string hex)
    {
        var bytes = Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));
        var parsed = Multiaddress.Parse(text);

        Assert.That(parsed.ToByteArray(), Is.EqualTo(bytes));
        Assert.That(parsed.ToString(), Is.EqualTo(text));
        var decoded = Multiaddress.FromBytes(bytes);
        Assert.That(decoded, Is.EqualTo(parsed));
        Assert.That(decoded.ToString(), Is.EqualTo(text));
        Assert.That(decoded.GetHashCode(), Is.EqualTo(parsed.GetHashCode()));
    }

    [Test]
    public void Parse_AcceptsCidPeerIdAndIpfsAlias_PrintingCanonicalBase58()
    {
        var expected = Multiaddress.Parse("/p2p/" + Sha256PeerId);
        Assert.That(Multiaddress.Parse("/ipfs/" + Sha256PeerId), Is.EqualTo(expected));
        Assert.That(Multiaddress.Parse("/p2p/bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"), Is.EqualTo(expected));
        Assert.That(Multiaddress.Parse("/ipfs/" + Sha256PeerId).ToString(), Is.EqualTo("/p2p/" + Sha256PeerId));
    }

    [Test]
    public void Parse_IgnoresOneTrailingSlash()
    {
        Assert.That(Multiaddress.Parse("/ip4/1.2.3.4/tcp/5/"), Is.EqualTo(Multiaddress.Parse("/ip4/1.2.3.4/tcp/5")));
    }

    [Test]
    public void Parse_PrintsIp6InCanonicalForm()
    {
        Assert.That(Multiaddress.Parse("/ip6/0:0:0:0:0:0:0:1/tcp/1").ToString(), Is.EqualTo("/ip6/::1/tcp/1"));
        Assert.That(Multiaddress.Parse("/ip6/::ffff:1.2.3.4/tcp/1").ToString(), Is.EqualTo("/ip6/::ffff:1.2.3.4/tcp/1"));
    }

    [TestCase("", "must start with '/'")]
    [TestCase("ip4/1.2.3.4", "must start with '/'")]
    [TestCase("/foo/1", "unknown multiaddr protocol 'foo'")]
    [TestCase("/ip4/1.2.3.4/tcp/1/bogus", "unknown multiaddr protocol 'bogus'")]
    [TestCase("/ip4//tcp/1", "needs a value")]
    [TestCase("/ip4", "needs a value")]
    [TestCase("/ip4/1.2.3.4/tcp", "needs a value")]
    [TestCase("/dns4", "needs a value")]
    [TestCase("/p2p", "needs a value")]
    [TestCase("/ip4/1.2.3", "IPv4")]
    [TestCase("/ip4/1.2.3.4.5", "IPv4")]
    [TestCase("/ip4/256.0.0.1", "IPv4")]
    [TestCase("/ip4/127.1", "IPv4")]
    [TestCase("/ip4/2130706433", "IPv4")]
    [TestCase("/ip4/0x7f.0.0.1", "IPv4")]
    [TestCase("/ip4/01.2.3.4", "IPv4")]
    [TestCase("/ip4/1.2.3.-4", "IPv4")]
    [TestCase("/ip4/::1", "IPv4")]
    [TestCase("/ip4/localhost", "IPv4")]
    [TestCase("/ip6/1.2.3.4", "IPv6")]
    [TestCase("/ip6/[::1]", "IPv6")]
    [TestCase("/ip6/fe80::1%eth0", "IPv6")]
    [TestCase("/ip6/:::1", "IPv6")]
    [TestCase("/ip6/12345::1", "IPv6")]
    [TestCase("/ip4/1.2.3.4/tcp/70000", "port")]
    [TestCase("/ip4/1.2.3.4/tcp/65536", "port")]
    [TestCase("/ip4/1.2.3.4/tcp/-1", "port")]
    [TestCase("/ip4/1.2.3.4/tcp/+80", "port")]
    [TestCase("/ip4/1.2.3.4/tcp/ 80", "port")]
    [TestCase("/ip4/1.2.3.4/tcp/http", "port")]
    [TestCase("/ip4/1.2.3.4/udp/99999", "port")]
    [TestCase("/p2p/notapeerid", "peer id")]
    [TestCase("/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5", "")]
    public void Parse_RejectsMalformedText_WithFormatException(string text, string message)
    {
        Assert.That(() => Multiaddress.Parse(text), Throws.TypeOf<FormatException>().With.Message.Contains(message));
        Assert.That(Multiaddress.TryParse(text, out var address), Is.False);
        Assert.That(address, Is.Null);
    }

    [Test]
    public void Parse_RejectsOverlongText()
    {
        Assert.That(() => Multiaddress.Parse("/dns4/" + new string('a', Multiaddress.MaxLength)), Throws.TypeOf<FormatException>());
    }

    [Test]
    public void TryParse_ReturnsFalse_ForNull()
    {
        Assert.That(Multiaddress.TryParse(null, out _), Is.False);
    }

    [Test]
    public void Encapsulate_AppendsAndDecapsulate_RemovesFromTheLastMatch()
    {
        var ip = Multiaddress.Parse("/ip4/1.2.3.4/tcp/80");
        var ws = Multiaddress.Parse("/ws");
        var both = ip.Encapsulate(ws);

        Assert.That(both.ToString(), Is.EqualTo("/ip4/1.2.3.4/tcp/80/ws"));
        Assert.That(both.Decapsulate(MultiaddressProtocol.Ws), Is.EqualTo(ip));
        Assert.That(both.Decapsulate(MultiaddressProtocol.Tcp).ToString(), Is.EqualTo("/ip4/1.2.3.4"));
        Assert.That(both.Decapsulate(MultiaddressProtocol.Dns4), Is.SameAs(both));

        var relayed = Multiaddress.Parse($"/ip4/1.2.3.4/tcp/80/p2p/{Sha256PeerId}/p2p-circuit/p2p/{Ed25519PeerId}");
        Assert.That(relayed.Decapsulate(MultiaddressProtocol.P2p).ToString(),
            Is.EqualTo($"/ip4/1.2.3.4/tcp/80/p2p/{Sha256PeerId}/p2p-circuit"));
    }

    [Test]
    public void PeerId_WithPeerId_WithoutPeerId_HandleTheTrailingP2pComponent()
    {
        var peer = PeerId.Parse(Ed25519PeerId);
        var other = KeyPair.FromRandom(TestSeed.CreateRandom()).PeerId;
        var bare = Multiaddress.Parse("/ip4/1.2.3.4/tcp/80");

        Assert.That(bare.PeerId, Is.Null);
        var withPeer = bare.WithPeerId(peer);
        Assert.That(withPeer.ToString(), Is.EqualTo("/ip4/1.2.3.4/tcp/80/p2p/" + Ed25519PeerId));
        Assert.That(withPeer.PeerId, Is.EqualTo(peer));
        Assert.That(withPeer.WithoutPeerId(), Is.EqualTo(bare));
        Assert.That(withPeer.WithPeerId(other).PeerId, Is.EqualTo(other));
        Assert.That(withPeer.WithPeerId(other).ToString(), Is.EqualTo("/ip4/1.2.3.4/tcp/80/p2p/" + other));
    }

    [Test]
    public void HasAndValueOf_FindComponents()
    {
        var address = Multiaddress.Parse("/dns4/example.com/tcp/443/p2p/" + Ed25519PeerId);
        Assert.That(address.Has(MultiaddressProtocol.Dns4), Is.True);
        Assert.That(address.Has(MultiaddressProtocol.Ip4), Is.False);
        Assert.That(address.ValueOf(MultiaddressProtocol.Dns4), Is.EqualTo("example.com"));
        Assert.That(address.ValueOf(MultiaddressProtocol.Tcp), Is.EqualTo("443"));
        Assert.That(address.ValueOf(MultiaddressProtocol.P2p), Is.EqualTo(Ed25519PeerId));
        Assert.That(address.ValueOf(MultiaddressProtocol.Udp), Is.Null);
        Assert.That(address.Components, Has.Count.EqualTo(3));
    }

    [TestCase("/ip4/1.2.3.4/tcp/80", "1.2.3.4", 80)]
    [TestCase("/ip6/::1/tcp/4001", "::1", 4001)]
    [TestCase("/dns/example.com/tcp/1", "example.com", 1)]
    [TestCase("/dns4/localhost/tcp/65535/p2p/" + Ed25519PeerId, "localhost", 65535)]
    public void TcpHostPort_ReadsHostAndPort(string text, string host, int port)
    {
        Assert.That(Multiaddress.Parse(text).TcpHostPort(), Is.EqualTo((host, port)));
    }

    [TestCase("/ip4/1.2.3.4/udp/80")]
    [TestCase("/memory/a")]
    [TestCase("/ip4/1.2.3.4")]
    [TestCase("/p2p-circuit/tcp/1")]
    public void TcpHostPort_IsNull_ForOtherAddresses(string text)
    {
        Assert.That(Multiaddress.Parse(text).TcpHostPort(), Is.Null);
    }

    [Test]
    public void FromIPEndPoint_UnmapsIPv4MappedAddresses()
    {
        Assert.That(Multiaddress.FromIPEndPoint(new IPEndPoint(IPAddress.Parse("::ffff:10.0.0.1"), 5)).ToString(), Is.EqualTo("/ip4/10.0.0.1/tcp/5"));
        Assert.That(Multiaddress.FromIPEndPoint(new IPEndPoint(IPAddress.IPv6Loopback, 5)).ToString(), Is.EqualTo("/ip6/::1/tcp/5"));
        Assert.That(Multiaddress.FromIPEndPoint(new IPEndPoint(IPAddress.Loopback, 0)).ToString(), Is.EqualTo("/ip4/127.0.0.1/tcp/0"));
    }

    [Test]
    public void Memory_BuildsAMemoryAddress()
    {
        var address = Multiaddress.Memory("node-7");
        Assert.That(address.ToString(), Is.EqualTo("/memory/node-7"));
        Assert.That(Multiaddress.Parse("/memory/node-7"), Is.EqualTo(address));
        Assert.That(address.ValueOf(MultiaddressProtocol.Memory), Is.EqualTo("node-7"));
    }

    [Test]
    public void Equality_IsByBytes()
    {
        Assert.That(Multiaddress.Parse("/ip4/1.2.3.4/tcp/1") == Multiaddress.Parse("/ip4/1.2.3.4/tcp/1"), Is.True);
        Assert.That(Multiaddress.Parse("/ip4/1.2.3.4/tcp/1") != Multiaddress.Parse("/ip4/1.2.3.4/tcp/2"), Is.True);
        Assert.That(Multiaddress.Parse("/ip4/1.2.3.4/tcp/1").Equals((object?)null), Is.False);
        Assert.That(Multiaddress.Empty, Is.EqualTo(Multiaddress.Parse("/")));
    }

    [Test]
    public void MultiaddressProtocol_LooksUpByNameAndCode()
    {
        Assert.That(MultiaddressProtocol.TryGet(273, out var udp), Is.True);
        Assert.That(udp, Is.EqualTo(MultiaddressProtocol.Udp));
        Assert.That(MultiaddressProtocol.TryGet("ipfs", out var p2p), Is.True);
        Assert.That(p2p, Is.EqualTo(MultiaddressProtocol.P2p));
        Assert.That(MultiaddressProtocol.TryGet("http", out _), Is.False);
        Assert.That(MultiaddressProtocol.TryGet(9999, out _), Is.False);
    }

    [TestCase("/ip4/0.0.0.0/tcp/4001", ExpectedResult = true)]
    [TestCase("/ip6/::/tcp/4001", ExpectedResult = true)]
    [TestCase("/ip4/0.0.0.1/tcp/4001", ExpectedResult = false)]
    [TestCase("/ip6/::1/tcp/4001", ExpectedResult = false)]
    [TestCase("/dns4/0.0.0.0/tcp/4001", ExpectedResult = false)]
    [TestCase("/memory/a", ExpectedResult = false)]
    public bool HasUnspecifiedHost_OnlyForTheAnyAddressOfEitherFamily(string text) => Multiaddress.Parse(text).HasUnspecifiedHost;

    [Test]
    public void WithHost_ReplacesOnlyTheFirstComponent_InEitherFamily()
    {
        var listen = Multiaddress.Parse("/ip4/0.0.0.0/tcp/4001/p2p/12D3KooWHQ2gGvzNgW8dGVKSDP2zEzh54DqynBNKMJWEbri6XhHR");

        Assert.That(listen.WithHost(System.Net.IPAddress.Parse("192.0.2.7")).ToString(),
            Is.EqualTo("/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWHQ2gGvzNgW8dGVKSDP2zEzh54DqynBNKMJWEbri6XhHR"));
        Assert.That(listen.WithHost(System.Net.IPAddress.Parse("::ffff:192.0.2.7")).ToString(), Does.StartWith("/ip4/192.0.2.7/tcp/4001"), "a mapped IPv4 is IPv4");
        Assert.That(listen.WithHost(System.Net.IPAddress.Parse("2001:db8::7")).ToString(), Does.StartWith("/ip6/2001:db8::7/tcp/4001/p2p/"));
        Assert.That(listen.WithHost(System.Net.IPAddress.Loopback), Is.EqualTo(Multiaddress.Parse("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWHQ2gGvzNgW8dGVKSDP2zEzh54DqynBNKMJWEbri6XhHR")),
            "equal to the parsed form, bytes and all");
    }
}
