using System.Globalization;
using System.Runtime.ExceptionServices;
using NUnit.Framework;

namespace P2PInference.TestKit.Simulation;

/// <summary>
/// Runs a test body as a simulation: one thread, the simulation clock, the test's seed. The one way
/// tests run on virtual time:
/// <code>[Test] public void Expires() => SimulationTest.Run(async sim => { ...; await sim.Clock.AdvanceAsync(TimeSpan.FromHours(1)); ... });</code>
/// The seed comes from <c>P2P_TEST_SEED</c> (or is chosen fresh) and the schedule from
/// <c>P2P_TEST_SCHEDULE</c> (<c>fifo</c> by default, <c>random</c> or <c>pct</c> to explore
/// interleavings); a failing run prints both, its trace hash and the command that replays it.
/// </summary>
public static class SimulationTest
{
    public const string ScheduleVariable = "P2P_TEST_SCHEDULE";

    /// <summary>Options with the test's seed and the schedule <c>P2P_TEST_SCHEDULE</c> asks for; change the rest with <c>with</c>.</summary>
    public static SimulationOptions Options(int? seed = null) => new()
    {
        Seed = seed ?? TestSeed.Choose(),
        Strategy = ScheduleFromEnvironment(),
    };

    /// <summary>The schedule named by <c>P2P_TEST_SCHEDULE</c>, FIFO when unset.</summary>
    /// <exception cref="ArgumentException">The variable names no strategy.</exception>
    public static ScheduleStrategy ScheduleFromEnvironment() => ParseSchedule(Environment.GetEnvironmentVariable(ScheduleVariable));

    /// <summary>A schedule by name (<c>fifo</c>, <c>random</c>, <c>pct</c>); FIFO for null or blank.</summary>
    /// <exception cref="ArgumentException">The text names no strategy.</exception>
    public static ScheduleStrategy ParseSchedule(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return ScheduleStrategy.Fifo;
        text = text.Trim();
        // Names only: Enum.TryParse would also take "2".
        return text.All(char.IsLetter) && Enum.TryParse<ScheduleStrategy>(text, ignoreCase: true, out var strategy)
            ? strategy
            : throw new ArgumentException($"{ScheduleVariable}='{text}' is not a schedule: use fifo, random or pct");
    }

    /// <summary>Runs <paramref name="body"/> to completion on a new simulation; returns the executor for its trace hash and steps.</summary>
    public static SimulationExecutor Run(Func<SimulationExecutor, Task> body, SimulationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(body);
        var sim = new SimulationExecutor(options ?? Options());
        Execute(sim, () =>
        {
            sim.Run(() => body(sim));
            return true;
        });
        return sim;
    }

    /// <summary>As <see cref="Run(Func{SimulationExecutor, Task}, SimulationOptions?)"/>, returning the body's result.</summary>
    public static T Run<T>(Func<SimulationExecutor, Task<T>> body, SimulationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(body);
        var sim = new SimulationExecutor(options ?? Options());
        return Execute(sim, () => sim.Run(() => body(sim)));
    }

    /// <summary>The command that replays the current test with this run's seed and schedule.</summary>
    public static string ReplayCommand(SimulationExecutor sim)
    {
        ArgumentNullException.ThrowIfNull(sim);
        var test = TestContext.CurrentContext.Test;
        var filter = test.ClassName is { } type ? $"{type}.{test.MethodName}" : test.FullName;
        return string.Create(CultureInfo.InvariantCulture,
            $"{TestSeed.EnvironmentVariable}={sim.Seed} {ScheduleVariable}={sim.Strategy.ToString().ToLowerInvariant()} dotnet test P2PInference.sln -c Release --filter \"FullyQualifiedName~{filter}\"");
    }

    private static T Execute<T>(SimulationExecutor sim, Func<T> run)
    {
        try
        {
            var result = run();
            TestContext.Out.WriteLine($"simulation: {sim}");
            return result;
        }
        catch (Exception e)
        {
            TestContext.Out.WriteLine($"simulation failed: {sim}");
            TestContext.Out.WriteLine($"replay: {ReplayCommand(sim)}");
            // The original exception, so an assertion still reports as a failure, not an error.
            ExceptionDispatchInfo.Capture(e is SimulationException { InnerException: { } inner } && e.GetType() == typeof(SimulationException) ? inner : e).Throw();
            throw;
        }
    }
}
