using System.CommandLine;
using System.Globalization;
using P2PInference.TestKit.Simulation;
using P2PInference.Workers.Simulation;

namespace P2PInference.Workers.Cli;

/// <summary>
/// <c>p2pinference simulate</c>: a seeded simulation of a whole network (<see cref="NetworkSimulation"/>) —
/// prints seed, trace hash, virtual and wall time, compression, faults, requests by outcome and each
/// invariant; exits 0 only when every invariant held.
/// </summary>
internal static class SimulateCommand
{
    /// <summary>Exit code of a run in which an invariant failed (bad options and broken runs exit 1).</summary>
    public const int InvariantFailed = 2;

    public static Command Create(TextWriter output, TextWriter error)
    {
        var defaults = new SimulationSettings();
        var seed = new Option<int>("--seed") { Description = "The seed that decides the whole run", DefaultValueFactory = _ => defaults.Seed };
        var processors = new Option<int>("--processors") { Description = "Processor nodes (builtin engine)", DefaultValueFactory = _ => defaults.Processors };
        var gateways = new Option<int>("--gateways") { Description = "Gateway nodes", DefaultValueFactory = _ => defaults.Gateways };
        var clients = new Option<int>("--clients") { Description = "Clients, each a user on a node of its own", DefaultValueFactory = _ => defaults.Clients };
        var minutes = new Option<double>("--virtual-minutes")
        {
            Description = "Virtual time the clients run for",
            DefaultValueFactory = _ => defaults.VirtualDuration.TotalMinutes,
        };
        var faults = new Option<string>("--faults")
        {
            Description = "Faults to inject, comma-separated: crash, partition, latency, skew (or all, none)",
            DefaultValueFactory = _ => "none",
        };
        var schedule = new Option<string>("--schedule")
        {
            Description = "Which ready work runs next: fifo, or random (seeded) to explore interleavings",
            DefaultValueFactory = _ => "fifo",
        };
        var nat = new Option<string>("--nat")
        {
            Description = "Put each processor behind a NAT router: none, cone (port-restricted) or symmetric; a relay node joins the network and processors reserve on it",
            DefaultValueFactory = _ => "none",
        };
        var json = CliOptions.Json();
        var command = new Command("simulate",
            "Run a whole network on virtual time from one seed, under a fault mix, and check its invariants (exit 0 only when all hold)")
        {
            seed, processors, gateways, clients, minutes, faults, schedule, nat, json,
        };
        command.SetAction((result, _) => CliErrors.RunAsync(error, async () =>
        {
            var settings = new SimulationSettings
            {
                Seed = result.GetValue(seed),
                Processors = result.GetValue(processors),
                Gateways = result.GetValue(gateways),
                Clients = result.GetValue(clients),
                VirtualDuration = Minutes(result.GetValue(minutes)),
                Faults = SimulationSettings.ParseFaults(result.GetValue(faults)),
                Schedule = ParseSchedule(result.GetValue(schedule)),
                Nat = SimulationSettings.ParseNat(result.GetValue(nat)),
            };
            settings.Validate();
            // The simulation owns this thread until it ends: one thread is what makes a seed replay.
            var report = NetworkSimulation.Run(settings);
            await output.WriteAsync(result.GetValue(json) ? report.ToJson() + Environment.NewLine : report.ToText());
            await output.FlushAsync();
            if (report.Ok) return 0;
            await error.WriteLineAsync("error: invariants failed: " + string.Join(", ", report.Invariants.Where(i => !i.Ok).Select(i => i.Name))
                + "; replay with: " + report.ReplayCommand);
            return InvariantFailed;
        }));
        return command;
    }

    private static TimeSpan Minutes(double minutes) =>
        double.IsFinite(minutes) && minutes > 0 && minutes <= 1440
            ? TimeSpan.FromMinutes(minutes)
            : throw new ArgumentException($"--virtual-minutes must be above 0 and at most 1440 (was {minutes.ToString(CultureInfo.InvariantCulture)})");

    private static ScheduleStrategy ParseSchedule(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        "fifo" or null or "" => ScheduleStrategy.Fifo,
        "random" => ScheduleStrategy.Random,
        "pct" => ScheduleStrategy.Pct,
        _ => throw new ArgumentException($"--schedule: '{text}' is not a schedule; use fifo or random (or pct)"),
    };
}
