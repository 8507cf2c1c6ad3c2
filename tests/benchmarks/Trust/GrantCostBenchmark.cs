using System.Diagnostics;
using System.Globalization;
using System.Text;
using MessagePack;
using P2PInference.Benchmarks.Workers;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Rpc.Wire;
using P2PInference.Facilities.Trust;
using P2PInference.TestKit.Rpc;
using P2PInference.Workers.Contracts;
using P2PInference.Workers.Contracts.Inference;
using P2PInference.Workers.Client;
using P2PInference.Workers.Hosting;

namespace P2PInference.Benchmarks.Trust;

/// <summary>
/// What checking role grants costs, measured with the checks on and off in the same run, the two
/// interleaved (alternating order, round by round) so a shared machine's load falls on both alike:
/// <list type="number">
/// <item>connection setup as a caller sees it before its first call: a fresh caller dials (TCP, Noise,
/// Yamux, identify), fetches and verifies the callee's grant (<c>trust.grant</c>) and asks it for a newer revocation
/// list (<c>trust.revocations</c>), and makes one small
/// call carrying its own grant, which the callee verifies — against the same dial and call without either;</item>
/// <item>the gateway path (clients → gateway → processors) and one RPC hop with a trivial handler, through
/// workers that check grants as shipped against the same workers started with
/// <see cref="WorkerRuntimeOptions.GrantChecksOffForBenchmark"/> (they still present their grants; the
/// client checks the gateway's in both);</item>
/// <item>the parts: a grant checked the first time and again, and the bytes it adds to every request.</item>
/// </list>
/// </summary>
public static class GrantCostBenchmark
{
    /// <summary>Granted: the callee's role is checked and the call carries the caller's grant.</summary>
    private const string CheckedMethod = "processor.bench";

    /// <summary>The same echo without either (the name is as long, so the envelopes differ only by the grant).</summary>
    private const string UncheckedMethod = "bench.unchecked";

    private static readonly Multiaddress Loopback = Multiaddress.Parse("/ip4/127.0.0.1/tcp/0");
    private static readonly byte[] SmallPayload = new byte[64];

    /// <param name="ConnectsPerMode">Connections set up with checks on, and as many with checks off.</param>
    /// <param name="Rounds">How many times each mode is measured, alternating which goes first.</param>
    /// <param name="Window">Each mode's share of a round on the gateway path and the RPC hop.</param>
    public sealed record Sizes(int ConnectsPerMode, int Rounds, TimeSpan Window, int Clients)
    {
        public static Sizes Quick { get; } = new(60, 2, TimeSpan.FromSeconds(1), 16);

        // Many short rounds rather than a few long ones: on a shared machine the load drifts, and each round pairs on with off.
        public static Sizes Full { get; } = new(400, 8, TimeSpan.FromSeconds(1.25), 16);
    }

    public static async Task<string> RunAsync(Sizes sizes, CancellationToken ct)
    {
        var rows = new List<Row>();
        Console.Error.WriteLine("  grants: connection setup");
        var (connectOn, connectOff) = await ConnectionSetupAsync(sizes, ct);
        var connects = $"connect + grant query + 1 call ({sizes.ConnectsPerMode} per mode)";
        rows.Add(Row.Of($"{connects}, p50", "ms", connectOn, connectOff, m => m.P50));
        rows.Add(Row.Of($"{connects}, p99", "ms", connectOn, connectOff, m => m.P99));
        rows.Add(Row.Of($"{connects}, sequential rate", "conn/s", connectOn, connectOff, m => m.PerSecond));
        // The median: a GC or another thread's burst lands on a few connections and would swing a mean by more than the checks cost.
        rows.Add(Row.Of($"{connects}, CPU per connection (median)", "µs", connectOn, connectOff, m => m.CpuMedian));

        Console.Error.WriteLine("  grants: gateway path and one RPC hop");
        var (inferOn, inferOff, hopOn, hopOff) = await GatewayPathAsync(sizes, ct);
        var infer = $"client -> gateway -> processor, {sizes.Clients} clients";
        rows.Add(Row.Of(infer, "req/s", inferOn, inferOff, m => m.PerSecond));
        rows.Add(Row.Of($"{infer}, p50", "ms", inferOn, inferOff, m => m.P50));
        rows.Add(Row.Of($"{infer}, p99", "ms", inferOn, inferOff, m => m.P99));
        rows.Add(Row.Of($"{infer}, CPU per request", "µs", inferOn, inferOff, m => m.CpuPerOp));
        var hop = $"one RPC hop (processor status), {sizes.Clients} callers";
        rows.Add(Row.Of(hop, "req/s", hopOn, hopOff, m => m.PerSecond));
        rows.Add(Row.Of($"{hop}, p50", "ms", hopOn, hopOff, m => m.P50));
        rows.Add(Row.Of($"{hop}, p99", "ms", hopOn, hopOff, m => m.P99));
        rows.Add(Row.Of($"{hop}, CPU per request", "µs", hopOn, hopOff, m => m.CpuPerOp));

        Console.Error.WriteLine("  grants: one hop on the in-memory RPC twin");
        var (twinOn, twinOff) = await TwinHopAsync(sizes.Rounds * 2, 2000, ct);
        var twin = "one hop, in-memory RPC twin (the trust code, no wire), c=1";
        rows.Add(Row.Of(twin, "µs/call", twinOn, twinOff, m => 1e6 / m.PerSecond));
        rows.Add(Row.Of($"{twin}, CPU per call", "µs", twinOn, twinOff, m => m.CpuPerOp));

        Console.Error.WriteLine("  grants: parts");
        var parts = await PartsAsync(TimeSpan.FromMilliseconds(300), ct);
        rows.Add(new Row("check a callee's grant, cached (caller, per request)", "ns", parts.CalleeCachedNanos, null, []));
        rows.Add(new Row("check a caller's grant, seen before (callee, per request)", "ns", parts.CachedNanos, null, []));
        rows.Add(new Row("check a grant first seen (base64, parse, Ed25519)", "µs", parts.FirstSightMicros, null, []));
        rows.Add(new Row($"p2p-grant metadata per request ({parts.EnvelopeBytes} B envelope without)", "bytes", parts.MetadataBytes, 0, []));

        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture,
            $"on = grants checked as shipped; off = the same code with the checks skipped (benchmark-only seam). Modes interleaved over {sizes.Rounds} rounds; connect: a fresh caller each time; paths: {sizes.Window.TotalSeconds:0.##} s per mode per round");
        text.AppendLine();
        text.Append(Render(rows));
        text.AppendLine();
        var errors = inferOn.Errors + inferOff.Errors + hopOn.Errors + hopOff.Errors;
        if (errors > 0) text.AppendLine(CultureInfo.InvariantCulture, $"- {errors} requests failed (on: {inferOn.Errors + hopOn.Errors}, off: {inferOff.Errors + hopOff.Errors}); they are not in the figures");
        text.AppendLine(CultureInfo.InvariantCulture,
            $"- connection setup: checks add {connectOn.P50 - connectOff.P50:0.00} ms at p50 and {connectOn.CpuMedian - connectOff.CpuMedian:0} µs of CPU (median; both ends, the caller's host made and closed counted in both) per new connection: two more round trips (trust.grant, then trust.revocations once the grant verifies) and an Ed25519 verification at each end");
        text.AppendLine(CultureInfo.InvariantCulture,
            $"- CPU per request (all workers are in this process): gateway path {inferOn.CpuPerOp:0} on, {inferOff.CpuPerOp:0} off; one hop {hopOn.CpuPerOp:0} on, {hopOff.CpuPerOp:0} off; twin hop {twinOn.CpuPerOp:0.0} on, {twinOff.CpuPerOp:0.0} off (µs)");
        text.AppendLine(CultureInfo.InvariantCulture,
            $"- by the parts, a granted hop costs {(parts.CalleeCachedNanos + parts.CachedNanos) / 1000:0.0} µs of checks and {parts.MetadataBytes} more request bytes (a gateway request makes two such hops: to Auth, cached by the gateway, and to a processor)");
        text.AppendLine("- by round: each round pairs on with off under the same load; the median of the rounds' own on/off ratios is the steadier figure on a busy machine, min–max shows how far the load moved them during this run");
        return text.ToString();
    }

    private static async Task<(Measured On, Measured Off)> ConnectionSetupAsync(Sizes sizes, CancellationToken ct)
    {
        var time = TimeProvider.System;
        await using var serverHost = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
        await using var server = new RpcNode(serverHost);
        // A processor: presents its grant, serves granted gateways on one method and anyone on the other.
        GrantExchange.Serve(server, GatewayBenchmark.Cluster.Issue(serverHost.PeerId, GrantRole.Processor, time.GetUtcNow(), TimeSpan.FromHours(1), SystemRandomSource.Instance));
        new TrustedRpcServer(server, new GrantVerifier(GatewayBenchmark.Cluster.Id, time), GrantRole.Gateway).Respond(CheckedMethod, Echo);
        server.Respond(UncheckedMethod, Echo);
        await serverHost.StartAsync([Loopback], ct);
        var address = serverHost.AdvertisedAddresses[0];

        for (var i = 0; i < 10; i++)
        {
            await ConnectOnceAsync(checks: true, address, serverHost.PeerId, ct);
            await ConnectOnceAsync(checks: false, address, serverHost.PeerId, ct);
        }
        var on = new Measured();
        var off = new Measured();
        var perRound = Math.Max(1, sizes.ConnectsPerMode / sizes.Rounds);
        for (var round = 0; round < sizes.Rounds; round++)
        {
            var (roundOn, roundOff) = (new Measured(), new Measured());
            for (var i = 0; i < perRound; i++)
            {
                // ABBA: neither mode always follows the other (a closing connection's work spills into the next).
                var onFirst = (i % 2 == 0) == (round % 2 == 0);
                foreach (var checks in onFirst ? new[] { true, false } : new[] { false, true })
                {
                    var (millis, cpuMicros) = await ConnectOnceAsync(checks, address, serverHost.PeerId, ct);
                    (checks ? roundOn : roundOff).Add(millis, cpuMicros);
                }
            }
            on.AddRound(roundOn);
            off.AddRound(roundOff);
        }
        return (on, off);
    }

    /// <summary>One fresh caller: dial, (grant query and verification,) one call. Milliseconds of the dial and call; CPU µs of the whole (host made and closed included).</summary>
    private static async Task<(double Millis, double CpuMicros)> ConnectOnceAsync(bool checks, Multiaddress address, PeerId server, CancellationToken ct)
    {
        var identity = KeyPair.Generate();
        // Issued once per node in real life, so outside what is counted.
        var grant = checks
            ? GatewayBenchmark.Cluster.Issue(identity.PeerId, GrantRole.Gateway, TimeProvider.System.GetUtcNow(), TimeSpan.FromHours(1), SystemRandomSource.Instance)
            : null;
        var cpu = Environment.CpuUsage.TotalTime;
        var host = new P2PHost(new HostOptions { Identity = identity, Transports = [new TcpTransport()] });
        var node = new RpcNode(host);
        // A new verifier too: a new callee's grant is never in the cache.
        IRpcClient caller = checks ? new TrustedRpcClient(node, new GrantVerifier(GatewayBenchmark.Cluster.Id, TimeProvider.System), WorkerTrust.RoleOfMethod, new HeldGrant(grant!)) : node;
        double millis;
        try
        {
            var start = Stopwatch.GetTimestamp();
            await host.ConnectAsync(address, ct);
            var reply = await caller.RequestAsync(server, checks ? CheckedMethod : UncheckedMethod, SmallPayload, null, ct);
            millis = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            if (reply.Length != SmallPayload.Length) throw new InvalidOperationException($"echo returned {reply.Length} bytes, expected {SmallPayload.Length}");
        }
        finally
        {
            await node.DisposeAsync();
            await host.DisposeAsync();
        }
        return (millis, (Environment.CpuUsage.TotalTime - cpu).TotalMicroseconds);
    }

    private static async Task<(Measured InferOn, Measured InferOff, Measured HopOn, Measured HopOff)> GatewayPathAsync(Sizes sizes, CancellationToken ct)
    {
        var root = Directory.CreateTempSubdirectory("p2pinference-grantcost-").FullName;
        var runtimes = new List<WorkerRuntime>();
        try
        {
            var checkedCluster = await GatewayBenchmark.StartClusterAsync(runtimes, Path.Combine(root, "on"), grantChecksOff: false, ct);
            await using var onClient = checkedCluster.Client;
            var uncheckedCluster = await GatewayBenchmark.StartClusterAsync(runtimes, Path.Combine(root, "off"), grantChecksOff: true, ct);
            await using var offClient = uncheckedCluster.Client;

            // The hop's callers: a granted gateway checking the processors' grants, and a plain node for the unchecked processors.
            var time = TimeProvider.System;
            var onIdentity = KeyPair.Generate();
            await using var onHost = new P2PHost(new HostOptions { Identity = onIdentity, Transports = [new TcpTransport()] });
            await using var onNode = new RpcNode(onHost);
            var onHopClient = new TrustedRpcClient(onNode, new GrantVerifier(GatewayBenchmark.Cluster.Id, time), WorkerTrust.RoleOfMethod,
                new HeldGrant(GatewayBenchmark.Cluster.Issue(onIdentity.PeerId, GrantRole.Gateway, time.GetUtcNow(), TimeSpan.FromHours(1), SystemRandomSource.Instance)));
            await using var offHost = new P2PHost(new HostOptions { Identity = KeyPair.Generate(), Transports = [new TcpTransport()] });
            await using var offNode = new RpcNode(offHost);
            foreach (var processor in checkedCluster.Processors) await onHost.ConnectAsync(processor.Addresses[0], ct);
            foreach (var processor in uncheckedCluster.Processors) await offHost.ConnectAsync(processor.Addresses[0], ct);

            var status = new StatusRequest();
            var seed = 0;
            Func<Task> Infer(P2PInferenceClient client) => () => client.InferAsync(GatewayBenchmark.Request(Interlocked.Increment(ref seed)), ct);
            Func<Task> Hop(IRpcClient caller, WorkerRuntime[] processors) => () =>
                caller.RequestAsync(processors[Interlocked.Increment(ref seed) % processors.Length].PeerId, WorkerMethods.Processor.Status, status, StatusResponse.Parser, null, ct);
            var modes = new (Func<Task> Call, Measured Into)[]
            {
                (Infer(onClient), new Measured()),
                (Infer(offClient), new Measured()),
                (Hop(onHopClient, checkedCluster.Processors), new Measured()),
                (Hop(offNode, uncheckedCluster.Processors), new Measured()),
            };
            foreach (var (call, _) in modes)
            {
                for (var i = 0; i < 20; i++) await call();
            }
            for (var round = 0; round < sizes.Rounds; round++)
            {
                // Each path's on and off back to back, which first alternating by round.
                int[] order = round % 2 == 0 ? [0, 1, 2, 3] : [1, 0, 3, 2];
                foreach (var m in order) modes[m].Into.AddRound(await WindowAsync(sizes.Clients, sizes.Window, modes[m].Call, ct));
            }
            return (modes[0].Into, modes[1].Into, modes[2].Into, modes[3].Into);
        }
        finally
        {
            for (var i = runtimes.Count - 1; i >= 0; i--) await runtimes[i].DisposeAsync();
            Directory.Delete(root, recursive: true);
        }
    }

    private static async Task<Measured> WindowAsync(int clients, TimeSpan duration, Func<Task> call, CancellationToken ct)
    {
        var samples = new List<double>[clients];
        var errors = 0;
        var cpu = Environment.CpuUsage.TotalTime;
        var start = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async c =>
        {
            var mine = samples[c] = [];
            while (Stopwatch.GetElapsedTime(start) < duration && !ct.IsCancellationRequested)
            {
                var t = Stopwatch.GetTimestamp();
                try
                {
                    await call();
                    mine.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                }
                catch (RpcException)
                {
                    Interlocked.Increment(ref errors);
                }
            }
        }));
        var window = new Measured { Seconds = Stopwatch.GetElapsedTime(start).TotalSeconds, CpuMicros = (Environment.CpuUsage.TotalTime - cpu).TotalMicroseconds, Errors = errors };
        window.Latencies.AddRange(samples.SelectMany(s => s));
        return window;
    }

    /// <summary>
    /// A granted gateway calling a processor on the TestKit's in-memory RPC twin, one call at a time, against the same
    /// call without the trust wrappers: everything the checks add per call (the callee's cached grant looked up and
    /// checked, the caller's grant put in the metadata and checked by the callee) without the wire's noise.
    /// </summary>
    private static async Task<(Measured On, Measured Off)> TwinHopAsync(int rounds, int callsPerRound, CancellationToken ct)
    {
        var time = TimeProvider.System;
        var cluster = GatewayBenchmark.Cluster;
        var network = new InMemoryRpcNetwork(time);
        await using var processor = network.CreateNode();
        GrantExchange.Serve(processor, cluster.Issue(processor.PeerId, GrantRole.Processor, time.GetUtcNow(), TimeSpan.FromHours(1), SystemRandomSource.Instance));
        new TrustedRpcServer(processor, new GrantVerifier(cluster.Id, time), GrantRole.Gateway).Respond(CheckedMethod, Echo);
        processor.Respond(UncheckedMethod, Echo);
        await using var gateway = network.CreateNode();
        var granted = new TrustedRpcClient(gateway, new GrantVerifier(cluster.Id, time), WorkerTrust.RoleOfMethod,
            new HeldGrant(cluster.Issue(gateway.PeerId, GrantRole.Gateway, time.GetUtcNow(), TimeSpan.FromHours(1), SystemRandomSource.Instance)));
        (IRpcClient Caller, string Method)[] modes = [(granted, CheckedMethod), (gateway, UncheckedMethod)];
        foreach (var (caller, method) in modes)
        {
            for (var i = 0; i < 200; i++) await caller.RequestAsync(processor.PeerId, method, SmallPayload, null, ct);
        }

        var (on, off) = (new Measured(), new Measured());
        for (var round = 0; round < rounds; round++)
        {
            foreach (var m in round % 2 == 0 ? new[] { 0, 1 } : new[] { 1, 0 })
            {
                var (caller, method) = modes[m];
                var block = new Measured();
                var cpu = Environment.CpuUsage.TotalTime;
                for (var i = 0; i < callsPerRound; i++)
                {
                    var start = Stopwatch.GetTimestamp();
                    await caller.RequestAsync(processor.PeerId, method, SmallPayload, null, ct);
                    block.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds, 0);
                }
                block.CpuSamples.Clear();
                block.CpuMicros = (Environment.CpuUsage.TotalTime - cpu).TotalMicroseconds;
                (m == 0 ? on : off).AddRound(block);
            }
        }
        return (on, off);
    }

    private static ValueTask<ReadOnlyMemory<byte>> Echo(ReadOnlyMemory<byte> request, RpcCallContext context) => ValueTask.FromResult(request);

    /// <summary>The checks on their own — the caller's of a callee it has asked before, the callee's of a caller's grant, cached and first seen — and what a grant adds to a request envelope.</summary>
    private static async Task<(double CalleeCachedNanos, double CachedNanos, double FirstSightMicros, int MetadataBytes, int EnvelopeBytes)> PartsAsync(
        TimeSpan budget, CancellationToken ct)
    {
        var time = TimeProvider.System;
        var cluster = GatewayBenchmark.Cluster;
        var grants = Enumerable.Range(0, 256).Select(_ =>
        {
            var peer = KeyPair.Generate().PeerId;
            return (Peer: peer, Text: cluster.Issue(peer, GrantRole.Gateway, time.GetUtcNow(), TimeSpan.FromHours(1), SystemRandomSource.Instance).ToText());
        }).ToArray();

        // The caller's side: after the first fetch, each call looks the callee's grant up and checks its times and revocation.
        var network = new InMemoryRpcNetwork(time);
        await using var callee = network.CreateNode();
        GrantExchange.Serve(callee, cluster.Issue(callee.PeerId, GrantRole.Processor, time.GetUtcNow(), TimeSpan.FromHours(1), SystemRandomSource.Instance));
        await using var callerNode = network.CreateNode();
        var caller = new TrustedRpcClient(callerNode, new GrantVerifier(cluster.Id, time), WorkerTrust.RoleOfMethod, ownGrant: null);
        if (await caller.CheckCalleeAsync(callee.PeerId, GrantRole.Processor, ct) is { } notGranted) throw notGranted;
        long calleeChecks = 0;
        var start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(start) < budget)
        {
            for (var i = 0; i < 1000; i++) await caller.CheckCalleeAsync(callee.PeerId, GrantRole.Processor, ct);
            calleeChecks += 1000;
        }
        var calleeCachedNanos = Stopwatch.GetElapsedTime(start).TotalNanoseconds / calleeChecks;

        var verifier = new GrantVerifier(cluster.Id, time);
        var (peer, text) = grants[0];
        if (verifier.Check(text, peer, GrantRole.Gateway, out _) is { } refused) throw new InvalidOperationException(refused);
        long cached = 0;
        start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(start) < budget)
        {
            for (var i = 0; i < 1000; i++) verifier.Check(text, peer, GrantRole.Gateway, out _);
            cached += 1000;
        }
        var cachedNanos = Stopwatch.GetElapsedTime(start).TotalNanoseconds / cached;

        long firstSight = 0;
        start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(start) < budget)
        {
            // A verifier that has seen none of them: every check parses and verifies the signature.
            var fresh = new GrantVerifier(cluster.Id, time);
            foreach (var grant in grants)
            {
                if (fresh.Check(grant.Text, grant.Peer, GrantRole.Gateway, out _) is { } reason) throw new InvalidOperationException(reason);
            }
            firstSight += grants.Length;
        }
        var firstSightMicros = Stopwatch.GetElapsedTime(start).TotalMicroseconds / firstSight;

        var bare = new RequestEnvelope { Method = WorkerMethods.Processor.Infer, Payload = SmallPayload, TraceId = new string('t', 32), RequestId = new string('r', 32) };
        var granted = new RequestEnvelope { Method = bare.Method, Payload = bare.Payload, TraceId = bare.TraceId, RequestId = bare.RequestId, Metadata = { [GrantExchange.MetadataKey] = text } };
        var bareBytes = MessagePackSerializer.Serialize(bare, MessagePackWire.Trusted).Length;
        var grantedBytes = MessagePackSerializer.Serialize(granted, MessagePackWire.Trusted).Length;
        return (calleeCachedNanos, cachedNanos, firstSightMicros, grantedBytes - bareBytes, bareBytes);
    }

    private static string Render(List<Row> rows)
    {
        string[] header = ["metric", "unit", "checks on", "checks off", "on/off", "by round: median", "min–max"];
        var lines = new List<string[]> { header };
        foreach (var r in rows)
        {
            var byRound = r.RoundRatios.Where(double.IsFinite).ToArray();
            lines.Add(
            [
                r.Metric,
                r.Unit,
                Format(r.On),
                Format(r.Off),
                r.On is { } on && r.Off is { } off && off != 0 ? (on / off).ToString("F3", CultureInfo.InvariantCulture) + "x" : "-",
                byRound.Length == 0 ? "-" : Median(byRound).ToString("F3", CultureInfo.InvariantCulture) + "x",
                byRound.Length == 0 ? "-" : $"{byRound.Min().ToString("F2", CultureInfo.InvariantCulture)}–{byRound.Max().ToString("F2", CultureInfo.InvariantCulture)}",
            ]);
        }
        return ResultTable.Markdown(lines);
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static string Format(double? value) => value switch
    {
        null => "n/a",
        { } v when Math.Abs(v) >= 1000 => v.ToString("N0", CultureInfo.InvariantCulture),
        { } v when Math.Abs(v) >= 100 => v.ToString("F0", CultureInfo.InvariantCulture),
        { } v when Math.Abs(v) >= 10 => v.ToString("F1", CultureInfo.InvariantCulture),
        { } v => v.ToString("F2", CultureInfo.InvariantCulture),
    };

    private sealed record Row(string Metric, string Unit, double? On, double? Off, IReadOnlyList<double> RoundRatios)
    {
        public static Row Of(string metric, string unit, Measured on, Measured off, Func<Measured, double> value) =>
            new(metric, unit, value(on), value(off), on.Rounds.Zip(off.Rounds, (a, b) => value(a) / value(b)).ToArray());
    }

    /// <summary>Latencies (ms), time and CPU of one mode: pooled over its rounds, each round also kept for the spread.</summary>
    private sealed class Measured
    {
        public List<double> Latencies { get; } = [];
        public List<Measured> Rounds { get; } = [];
        public double Seconds { get; set; }
        public double CpuMicros { get; set; }
        public int Errors { get; set; }

        public int Count => Latencies.Count;
        public double PerSecond => Count / Seconds;
        public double CpuPerOp => CpuMicros / Count;
        public double P50 => Percentile(50);
        public double P99 => Percentile(99);

        /// <summary>CPU of each operation, where measured one by one.</summary>
        public List<double> CpuSamples { get; } = [];

        public double CpuMedian => CpuSamples.Count == 0 ? double.NaN : Median([.. CpuSamples]);

        public void Add(double millis, double cpuMicros)
        {
            Latencies.Add(millis);
            CpuSamples.Add(cpuMicros);
            Seconds += millis / 1000;
            CpuMicros += cpuMicros;
        }

        public void AddRound(Measured round)
        {
            Rounds.Add(round);
            Latencies.AddRange(round.Latencies);
            CpuSamples.AddRange(round.CpuSamples);
            Seconds += round.Seconds;
            CpuMicros += round.CpuMicros;
            Errors += round.Errors;
        }

        private double Percentile(double p)
        {
            if (Count == 0) return double.NaN;
            var sorted = Latencies.Order().ToArray();
            return sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];
        }
    }
}
