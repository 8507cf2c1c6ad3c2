using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using P2PInference.Facilities.Encoding;

namespace P2PInference.Benchmarks;

/// <summary>
/// What the stack cannot beat: raw TCP loopback sockets doing the same job without any protocol, and
/// ChaCha20-Poly1305 sealing and opening the same bytes on one core.
/// </summary>
internal static class CeilingBenchmarks
{
    private const int ChunkSize = 64 * 1024;

    /// <summary>Same shape as /bench/throughput: write, half-close, wait for the 8-byte total. MB/s.</summary>
    public static async Task<double> TcpThroughputAsync(long bytes, CancellationToken ct)
    {
        var (a, b) = await ConnectedPairAsync(ct);
        using (a)
        using (b)
        {
            var sink = Task.Run(async () =>
            {
                var buffer = new byte[ChunkSize];
                long total = 0;
                int n;
                while ((n = await b.ReadAsync(buffer, ct)) > 0) total += n;
                var ack = new byte[8];
                BinaryPrimitives.WriteInt64BigEndian(ack, total);
                await b.WriteAsync(ack, ct);
            }, ct);
            var chunk = new byte[ChunkSize];
            RandomNumberGenerator.Fill(chunk);
            var start = Stopwatch.GetTimestamp();
            for (long sent = 0; sent < bytes;)
            {
                var n = (int)Math.Min(chunk.Length, bytes - sent);
                await a.WriteAsync(chunk.AsMemory(0, n), ct);
                sent += n;
            }
            a.Socket.Shutdown(SocketShutdown.Send);
            var ackBytes = new byte[8];
            await a.ReadExactlyAsync(ackBytes, ct);
            var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            await sink;
            return bytes / 1e6 / seconds;
        }
    }

    /// <summary>Seal then open <paramref name="bytes"/> in Noise-frame-sized chunks on this thread. MB/s.</summary>
    public static double ChaChaThroughput(long bytes)
    {
        const int plain = 65535 - 16;
        using var aead = new ChaCha20Poly1305(RandomNumberGenerator.GetBytes(32));
        var input = RandomNumberGenerator.GetBytes(plain);
        var sealedBytes = new byte[plain];
        var opened = new byte[plain];
        var tag = new byte[16];
        Span<byte> nonce = stackalloc byte[12];
        ulong counter = 0;
        void Round(int n, Span<byte> nonce)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(nonce[4..], counter++);
            aead.Encrypt(nonce, input.AsSpan(0, n), sealedBytes.AsSpan(0, n), tag);
            aead.Decrypt(nonce, sealedBytes.AsSpan(0, n), tag, opened.AsSpan(0, n));
        }
        for (var i = 0; i < 64; i++) Round(plain, nonce);
        var start = Stopwatch.GetTimestamp();
        for (long done = 0; done < bytes;)
        {
            var n = (int)Math.Min(plain, bytes - done);
            Round(n, nonce);
            done += n;
        }
        return bytes / 1e6 / Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    /// <summary>32-byte echo round trips on one socket pair, in microseconds.</summary>
    public static async Task<double[]> TcpPingAsync(int count, CancellationToken ct)
    {
        var (a, b) = await ConnectedPairAsync(ct);
        using (a)
        using (b)
        {
            var echo = Task.Run(async () =>
            {
                var buffer = new byte[32];
                while (await b.ReadAtLeastAsync(buffer, 32, throwOnEndOfStream: false, ct) == 32)
                    await b.WriteAsync(buffer, ct);
            }, ct);
            var payload = RandomNumberGenerator.GetBytes(32);
            var back = new byte[32];
            var rtts = new double[count];
            for (var i = -Math.Min(100, count); i < count; i++)
            {
                var start = Stopwatch.GetTimestamp();
                await a.WriteAsync(payload, ct);
                await a.ReadExactlyAsync(back, ct);
                if (i >= 0) rtts[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
            }
            a.Socket.Shutdown(SocketShutdown.Send);
            await echo;
            return rtts;
        }
    }

    /// <summary>Sequential connect + accept + close on loopback, per second.</summary>
    public static async Task<double> TcpConnectAsync(int count, CancellationToken ct)
    {
        using var listener = Listen();
        var endpoint = (IPEndPoint)listener.LocalEndPoint!;
        var start = Stopwatch.GetTimestamp();
        for (var i = 0; i < count; i++)
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            var accept = listener.AcceptAsync(ct);
            await client.ConnectAsync(endpoint, ct);
            using var server = await accept;
            client.Shutdown(SocketShutdown.Both);
        }
        return count / Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    /// <summary>Memory of connected, idle loopback socket pairs (NetworkStream on both ends), KiB per pair.</summary>
    public static async Task<(double HeapKiB, double WorkingSetKiB)> TcpIdleConnectionsAsync(int count, CancellationToken ct)
    {
        var before = MemorySnapshot.Take();
        var pairs = new List<(NetworkStream, NetworkStream)>(count);
        try
        {
            for (var i = 0; i < count; i++) pairs.Add(await ConnectedPairAsync(ct));
            var after = MemorySnapshot.Take();
            return MemorySnapshot.PerItem(before, after, count);
        }
        finally
        {
            foreach (var (a, b) in pairs)
            {
                a.Dispose();
                b.Dispose();
            }
        }
    }

    /// <summary>
    /// Length-prefixed echo of <paramref name="size"/> bytes on <paramref name="concurrency"/> persistent
    /// socket pairs (no per-call connection: TCP has no cheap "new stream"). Calls/s.
    /// </summary>
    public static async Task<double> TcpRpcAsync(int concurrency, TimeSpan duration, int size, CancellationToken ct)
    {
        var pairs = new List<(NetworkStream Client, NetworkStream Server)>();
        for (var i = 0; i < concurrency; i++) pairs.Add(await ConnectedPairAsync(ct));
        var servers = pairs.Select(p => Task.Run(async () =>
        {
            while (await LengthPrefixedMessage.ReadAsync(p.Server, 16 * 1024 * 1024, ct) is { } message)
                await LengthPrefixedMessage.WriteAsync(p.Server, message, ct);
        }, ct)).ToArray();
        var payload = RandomNumberGenerator.GetBytes(size);
        long calls = 0;
        var start = Stopwatch.GetTimestamp();
        await Task.WhenAll(pairs.Select(async p =>
        {
            while (Stopwatch.GetElapsedTime(start) < duration)
            {
                await LengthPrefixedMessage.WriteAsync(p.Client, payload, ct);
                _ = await LengthPrefixedMessage.ReadAsync(p.Client, 16 * 1024 * 1024, ct);
                Interlocked.Increment(ref calls);
            }
        }));
        var rate = calls / Stopwatch.GetElapsedTime(start).TotalSeconds;
        foreach (var p in pairs) p.Client.Socket.Shutdown(SocketShutdown.Send);
        await Task.WhenAll(servers);
        foreach (var p in pairs)
        {
            p.Client.Dispose();
            p.Server.Dispose();
        }
        return rate;
    }

    private static Socket Listen()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(512);
        return listener;
    }

    private static async Task<(NetworkStream Client, NetworkStream Server)> ConnectedPairAsync(CancellationToken ct)
    {
        using var listener = Listen();
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var accept = listener.AcceptAsync(ct);
        await client.ConnectAsync((IPEndPoint)listener.LocalEndPoint!, ct);
        var server = await accept;
        server.NoDelay = true;
        return (new NetworkStream(client, ownsSocket: true), new NetworkStream(server, ownsSocket: true));
    }
}
