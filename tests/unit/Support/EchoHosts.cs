using Microsoft.Extensions.Time.Testing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Support;

/// <summary>
/// Hosts on one in-memory network, without identify, that echo a 4-byte probe on <see cref="Protocol"/>;
/// for fixtures about how a connection is upgraded. Disposing disposes every host started.
/// </summary>
internal sealed class EchoHosts : IAsyncDisposable
{
    public const string Protocol = "/test/echo/1.0.0";
    private readonly List<P2PHost> _hosts = [];

    /// <summary>Never moved: nothing these fixtures check waits on a timer.</summary>
    public FakeTimeProvider Time { get; } = new();

    public InMemoryNetwork Network { get; }

    public EchoHosts() => Network = new InMemoryNetwork(Time);

    public async Task<P2PHost> StartAsync(string name, CancellationToken ct, IReadOnlyList<string>? securityProtocols = null, bool earlyMuxerNegotiation = true,
        bool inboundPeersArePublic = false)
    {
        var host = new P2PHost(new HostOptions
        {
            Identity = KeyPair.Generate(),
            Transports = [Network.CreateTransport(name)],
            TimeProvider = Time,
            IdentifyOnConnect = false,
            EarlyMuxerNegotiation = earlyMuxerNegotiation,
            InboundPeersArePublic = inboundPeersArePublic,
            SecurityProtocols = securityProtocols is { Count: > 0 } ? securityProtocols : HostOptions.DefaultSecurityProtocols,
        });
        _hosts.Add(host);
        host.Handle(Protocol, async (context, token) =>
        {
            var buffer = new byte[4];
            await context.Stream.ReadExactlyAsync(buffer, token);
            await context.Stream.WriteAsync(buffer, token);
            await context.Stream.FlushAsync(token);
        });
        await host.StartAsync([InMemoryNetwork.AddressOf(name)], ct);
        return host;
    }

    /// <summary>Sends "ping" from <paramref name="from"/> to <paramref name="to"/>'s echo and returns what came back.</summary>
    public static async Task<byte[]> EchoAsync(P2PHost from, PeerId to, CancellationToken ct)
    {
        var stream = await from.OpenStreamAsync(to, Protocol, ct);
        await using (stream)
        {
            await stream.WriteAsync("ping"u8.ToArray(), ct);
            var echoed = new byte[4];
            await stream.ReadExactlyAsync(echoed, ct);
            return echoed;
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var host in _hosts) await host.DisposeAsync();
        _hosts.Clear();
    }
}
