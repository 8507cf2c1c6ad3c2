using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Transport;
using P2PInference.TestKit.Network;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Network;

/// <summary>Shared steps of the NAT tests: real dials of the in-memory transport, on the simulation.</summary>
internal static class NatTesting
{
    public static readonly TimeSpan OneWay = TimeSpan.FromMilliseconds(10);

    /// <summary>A network on the simulation's clock and seed with 10 ms each way on every link.</summary>
    public static InMemoryNetwork CreateNetwork(SimulationExecutor sim, int? seed = null)
    {
        var network = new InMemoryNetwork(sim.Clock, seed ?? sim.Seed);
        network.ConfigureLinks(link => link.Latency = OneWay);
        return network;
    }

    public static async Task<ITransportListener> ListenAsync(this InMemoryNetwork network, string node) =>
        await network.CreateTransport(node).ListenAsync(InMemoryNetwork.AddressOf(node), CancellationToken.None);

    public static ValueTask<RawConnection> DialAsync(this InMemoryNetwork network, string from, Multiaddress to, CancellationToken cancellationToken = default) =>
        network.CreateTransport(from).DialAsync(to, cancellationToken);

    public static ValueTask<RawConnection> DialAsync(this InMemoryNetwork network, string from, string to, CancellationToken cancellationToken = default) =>
        network.DialAsync(from, InMemoryNetwork.AddressOf(to), cancellationToken);

    /// <summary>Dials and accepts the connection at <paramref name="listener"/>.</summary>
    public static async Task<(RawConnection Dialer, RawConnection Accepted)> ConnectThroughAsync(
        this InMemoryNetwork network, string from, Multiaddress to, ITransportListener listener)
    {
        var dialer = await network.DialAsync(from, to);
        var accepted = await listener.AcceptAsync(CancellationToken.None);
        return (dialer, accepted);
    }

    /// <summary>
    /// <paramref name="node"/> dials <paramref name="observer"/> (listening on <paramref name="listener"/>):
    /// the address the observer sees it at, as identify would report it. The connection stays open.
    /// </summary>
    public static async Task<Multiaddress> ObservedAtAsync(this InMemoryNetwork network, string node, string observer, ITransportListener listener)
    {
        var (_, accepted) = await network.ConnectThroughAsync(node, InMemoryNetwork.AddressOf(observer), listener);
        return accepted.RemoteAddress;
    }

    /// <summary>The dial's failure, or null when it connected.</summary>
    public static async Task<Exception?> DialFailureAsync(this InMemoryNetwork network, string from, Multiaddress to, CancellationToken cancellationToken = default)
    {
        try
        {
            await using var connection = await network.DialAsync(from, to, cancellationToken);
            return null;
        }
        catch (Exception e) when (e is TransportException or OperationCanceledException)
        {
            return e;
        }
    }

    /// <summary>Writes on one end and reads it on the other: the two raw connections are one connection.</summary>
    public static async Task<bool> CarriesAsync(RawConnection from, RawConnection to)
    {
        var payload = "through the NAT"u8.ToArray();
        await from.Stream.WriteAsync(payload);
        var received = await to.Stream.ReadExactlyAsync(payload.Length, CancellationToken.None);
        return received.AsSpan().SequenceEqual(payload);
    }

    public static int PortOf(Multiaddress address) => address.TcpHostPort()?.Port ?? throw new ArgumentException($"{address} has no TCP port");
}
