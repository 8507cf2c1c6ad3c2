using System.Globalization;
using System.Text;
using System.Text.Json;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Workers.Simulation;

/// <summary>What a <see cref="NetworkSimulation"/> run did: enough to replay it (seed, schedule, trace hash) and to judge it (invariants).</summary>
public sealed record SimulationReport
{
    public required SimulationSettings Settings { get; init; }

    public required ulong TraceHash { get; init; }

    public required long Steps { get; init; }

    public required TimeSpan VirtualTime { get; init; }

    public required TimeSpan WallTime { get; init; }

    /// <summary>Faults injected, by kind.</summary>
    public required IReadOnlyDictionary<string, int> Faults { get; init; }

    /// <summary>Requests by kind, then by outcome.</summary>
    public required IReadOnlyDictionary<string, IReadOnlyDictionary<string, long>> Requests { get; init; }

    public required IReadOnlyList<SimulationInvariant> Invariants { get; init; }

    /// <summary>With <see cref="SimulationSettings.Nat"/>: processors behind NAT that held a relay reservation, and that AutoNAT found private, when the clients finished, of all behind NAT.</summary>
    public (int Reserved, int Private, int BehindNat) NatReservations { get; init; }

    public bool Ok => Invariants.All(i => i.Ok);

    /// <summary>Virtual seconds simulated per wall-clock second.</summary>
    public double Compression => WallTime > TimeSpan.Zero ? VirtualTime.TotalSeconds / WallTime.TotalSeconds : 0;

    public string TraceHashText => TraceHash.ToString("x16", CultureInfo.InvariantCulture);

    /// <summary>Requests by outcome over every kind.</summary>
    public IReadOnlyDictionary<string, long> Outcomes => Requests.Values.SelectMany(o => o)
        .GroupBy(o => o.Key, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal)
        .ToDictionary(g => g.Key, g => g.Sum(o => o.Value), StringComparer.Ordinal);

    public string ReplayCommand => string.Create(CultureInfo.InvariantCulture, $"{ReplayWithoutNat}{NatOption}");

    private string NatOption => Settings.Nat == SimulationNat.None ? "" : " --nat " + Settings.Nat.ToString().ToLowerInvariant();

    private string ReplayWithoutNat => string.Create(CultureInfo.InvariantCulture,
        $"p2pinference simulate --seed {Settings.Seed} --processors {Settings.Processors} --gateways {Settings.Gateways} --clients {Settings.Clients} "
        + $"--virtual-minutes {Settings.VirtualDuration.TotalMinutes} --faults {SimulationSettings.FormatFaults(Settings.Faults)} --schedule {Settings.Schedule.ToString().ToLowerInvariant()}");

    public string ToText()
    {
        var text = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        text.AppendLine(c, $"seed          {Settings.Seed} (schedule {Settings.Schedule.ToString().ToLowerInvariant()})");
        var relay = Settings.Nat == SimulationNat.None ? "" : ", 1 relay";
        text.AppendLine(c, $"network       1 bootstrap, 1 auth, {Settings.Gateways} gateways, {Settings.Processors} processors, {Settings.Clients} clients{relay}");
        if (Settings.Nat != SimulationNat.None)
            text.AppendLine(c, $"nat           processors behind {Settings.Nat.ToString().ToLowerInvariant()} NATs; {NatReservations.Private} of {NatReservations.BehindNat} found private by AutoNAT, {NatReservations.Reserved} of {NatReservations.BehindNat} held a relay reservation at the end");
        text.AppendLine(c, $"trace hash    {TraceHashText} ({Steps} steps)");
        text.AppendLine(c, $"virtual time  {VirtualTime.TotalSeconds:0.0} s");
        text.AppendLine(c, $"wall time     {WallTime.TotalSeconds:0.00} s");
        text.AppendLine(c, $"compression   {Compression:0.0} virtual s per wall s");
        text.AppendLine(c, $"faults        {(Faults.Count == 0 ? "none" : string.Join(", ", Faults.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => $"{f.Key} {f.Value}")))}");
        text.AppendLine(c, $"requests      {string.Join(", ", Outcomes.Select(o => $"{o.Key} {o.Value}"))}");
        foreach (var (kind, outcomes) in Requests.OrderBy(r => r.Key, StringComparer.Ordinal))
            text.AppendLine(c, $"  {kind,-13} {string.Join(", ", outcomes.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $"{o.Key} {o.Value}"))}");
        text.AppendLine("invariants");
        foreach (var invariant in Invariants)
        {
            text.AppendLine(c, $"  {(invariant.Ok ? "ok    " : "FAILED")} {invariant.Name} ({invariant.Checks} checks): {invariant.Description}");
            foreach (var violation in invariant.Violations) text.AppendLine(c, $"           {violation}");
        }
        text.AppendLine(c, $"replay        {ReplayCommand}");
        return text.ToString();
    }

    public string ToJson() => JsonSerializer.Serialize(new
    {
        ok = Ok,
        seed = Settings.Seed,
        schedule = Settings.Schedule.ToString().ToLowerInvariant(),
        traceHash = TraceHashText,
        steps = Steps,
        virtualSeconds = Math.Round(VirtualTime.TotalSeconds, 3),
        wallSeconds = Math.Round(WallTime.TotalSeconds, 3),
        compression = Math.Round(Compression, 1),
        network = new { gateways = Settings.Gateways, processors = Settings.Processors, clients = Settings.Clients },
        nat = new { kind = Settings.Nat.ToString().ToLowerInvariant(), behindNat = NatReservations.BehindNat, autoNatPrivate = NatReservations.Private, reserved = NatReservations.Reserved },
        faults = Faults,
        requests = Outcomes,
        requestsByKind = Requests,
        invariants = Invariants.Select(i => new { name = i.Name, ok = i.Ok, checks = i.Checks, violations = i.ViolationCount, examples = i.Violations }),
        replay = ReplayCommand,
    });
}
