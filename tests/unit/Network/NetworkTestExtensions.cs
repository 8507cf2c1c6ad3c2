using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Threading;
using P2PInference.TestKit.Network;

namespace P2PInference.Tests.Unit.Network;

/// <summary>Small helpers for the in-memory network tests.</summary>
internal static class NetworkTestExtensions
{
    public static async Task<(RawConnection Dialer, RawConnection Listener)> ConnectAsync(
        this InMemoryNetwork network, string from, string to, CancellationToken cancellationToken)
    {
        var listener = network.IsListening(to) ? null : await network.CreateTransport(to).ListenAsync(InMemoryNetwork.AddressOf(to), cancellationToken);
        return await ConnectAsync(network, from, to, listener, cancellationToken);
    }

    public static async Task<(RawConnection Dialer, RawConnection Listener)> ConnectAsync(
        this InMemoryNetwork network, string from, string to, ITransportListener? listener, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(listener);
        var dialer = await network.CreateTransport(from).DialAsync(InMemoryNetwork.AddressOf(to), cancellationToken);
        var accepted = await listener.AcceptAsync(cancellationToken);
        return (dialer, accepted);
    }

    public static async Task<byte[]> ReadExactlyAsync(this Stream stream, int count, CancellationToken cancellationToken)
    {
        var buffer = new byte[count];
        await stream.ReadExactOnContextAsync(buffer, cancellationToken);
        return buffer;
    }

    /// <summary>One read of up to <paramref name="size"/> bytes; its result is the count (0 at end of stream).</summary>
    public static async Task<int> ReadSomeAsync(this Stream stream, int size, CancellationToken cancellationToken)
    {
        var buffer = new byte[size];
        var n = await stream.ReadAsync(buffer, cancellationToken);
        return n;
    }

    /// <summary>Reads until end of stream.</summary>
    public static async Task<byte[]> ReadToEndAsync(this Stream stream, CancellationToken cancellationToken)
    {
        using var all = new MemoryStream();
        var buffer = new byte[4096];
        int n;
        while ((n = await stream.ReadAsync(buffer, cancellationToken)) > 0) all.Write(buffer, 0, n);
        return all.ToArray();
    }

    /// <summary>Each read's size until end of stream (to observe slicing).</summary>
    public static async Task<List<int>> ReadSizesToEndAsync(this Stream stream, List<byte> into, CancellationToken cancellationToken)
    {
        var sizes = new List<int>();
        var buffer = new byte[65536];
        int n;
        while ((n = await stream.ReadAsync(buffer, cancellationToken)) > 0)
        {
            sizes.Add(n);
            into.AddRange(buffer.AsSpan(0, n));
        }
        return sizes;
    }
}
