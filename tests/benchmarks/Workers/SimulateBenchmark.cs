using System.Globalization;
using System.Text;
using P2PInference.Workers.Simulation;

namespace P2PInference.Benchmarks.Workers;

/// <summary>
/// <c>p2pinference simulate</c>'s time compression (virtual seconds per wall second): the default network
/// as the baseline, and a large one (50 processors, 200 clients) measured in the same run, with the ratio.
/// </summary>
public static class SimulateBenchmark
{
    public static string Run(TimeSpan virtualDuration)
    {
        var small = NetworkSimulation.Run(new SimulationSettings { Seed = 1, VirtualDuration = virtualDuration });
        var large = NetworkSimulation.Run(new SimulationSettings
        {
            Seed = 1,
            Processors = 50,
            Gateways = 4,
            Clients = 200,
            VirtualDuration = virtualDuration,
        });
        var text = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        text.AppendLine(c, $"{"network",-38} | {"virtual s",9} | {"wall s",7} | {"virtual s / wall s",18} | {"steps",10} | invariants");
        foreach (var (name, report) in new[] { ("1 gateway, 3 processors, 5 clients", small), ("4 gateways, 50 processors, 200 clients", large) })
        {
            var invariants = report.Ok ? "all hold" : "FAILED: " + string.Join(", ", report.Invariants.Where(i => !i.Ok).Select(i => i.Name));
            text.AppendLine(c, $"{name,-38} | {report.VirtualTime.TotalSeconds,9:0.0} | {report.WallTime.TotalSeconds,7:0.00} | {report.Compression,18:0.0} | {report.Steps,10} | {invariants}");
        }
        text.AppendLine(c, $"compression at 50/200 relative to the default network: {large.Compression / small.Compression:0.00}x");
        return text.ToString();
    }
}
