using System.Globalization;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Workers.Simulation;

/// <summary>What a <see cref="NetworkSimulation"/> runs: the network's shape, the fault mix, the virtual duration and the seed.</summary>
public sealed record SimulationSettings
{
    public const int MaxNodes = 2_000;

    public int Seed { get; init; } = 1;

    public int Processors { get; init; } = 3;

    public int Gateways { get; init; } = 1;

    public int Clients { get; init; } = 5;

    public TimeSpan VirtualDuration { get; init; } = TimeSpan.FromMinutes(5);

    public SimulationFaults Faults { get; init; } = SimulationFaults.None;

    public ScheduleStrategy Schedule { get; init; } = ScheduleStrategy.Fifo;

    /// <summary>Processors behind NAT routers (with a relay node in the network) or not.</summary>
    public SimulationNat Nat { get; init; } = SimulationNat.None;

    /// <exception cref="ArgumentException">A count or the duration is out of range.</exception>
    public void Validate()
    {
        Require(Processors >= 1, $"--processors must be at least 1 (was {Processors})");
        Require(Gateways >= 1, $"--gateways must be at least 1 (was {Gateways})");
        Require(Clients >= 1, $"--clients must be at least 1 (was {Clients})");
        Require(Processors + Gateways + Clients <= MaxNodes, $"at most {MaxNodes} nodes in all (was {Processors + Gateways + Clients})");
        Require(VirtualDuration > TimeSpan.Zero && VirtualDuration <= TimeSpan.FromDays(1),
            $"--virtual-minutes must be above 0 and at most 1440 (was {VirtualDuration.TotalMinutes.ToString(CultureInfo.InvariantCulture)})");
    }

    /// <summary>Parses a comma list such as <c>crash,partition</c>; empty or <c>none</c> is no faults.</summary>
    /// <exception cref="ArgumentException">A name is not a fault.</exception>
    public static SimulationFaults ParseFaults(string? text)
    {
        var faults = SimulationFaults.None;
        if (string.IsNullOrWhiteSpace(text)) return faults;
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            faults |= part.ToLowerInvariant() switch
            {
                "none" => SimulationFaults.None,
                "crash" => SimulationFaults.Crash,
                "partition" => SimulationFaults.Partition,
                "latency" => SimulationFaults.Latency,
                "skew" => SimulationFaults.Skew,
                "all" => SimulationFaults.Crash | SimulationFaults.Partition | SimulationFaults.Latency | SimulationFaults.Skew,
                _ => throw new ArgumentException($"--faults: '{part}' is not a fault; use crash, partition, latency, skew (comma-separated), all or none"),
            };
        }
        return faults;
    }

    /// <summary>Parses <c>none</c>, <c>cone</c> or <c>symmetric</c>.</summary>
    /// <exception cref="ArgumentException">Anything else.</exception>
    public static SimulationNat ParseNat(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "none" => SimulationNat.None,
        "cone" => SimulationNat.Cone,
        "symmetric" => SimulationNat.Symmetric,
        _ => throw new ArgumentException($"--nat: '{text}' is not a NAT kind; use none, cone or symmetric"),
    };

    /// <summary>The fault names as the command line spells them, or <c>none</c>.</summary>
    public static string FormatFaults(SimulationFaults faults) =>
        faults == SimulationFaults.None ? "none" : string.Join(',', Enum.GetValues<SimulationFaults>()
            .Where(f => f != SimulationFaults.None && faults.HasFlag(f)).Select(f => f.ToString().ToLowerInvariant()));

    private static void Require(bool condition, string message)
    {
        if (!condition) throw new ArgumentException(message);
    }
}
