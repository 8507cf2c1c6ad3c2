using System.Diagnostics;
using System.Globalization;
using System.Runtime;

namespace P2PInference.Benchmarks;

/// <summary>
/// Runs a benchmark's paths in rounds until the JIT has settled. .NET's tiered compilation compiles a
/// path's methods again (instrumented, then optimized) in the background once they were called often
/// enough, for thousands of methods here; on 2 cores that took a fifth of the machine for the first
/// 20–30 s and was counted against the rows measured meanwhile (the gateway's unary row, measured
/// first after one second of warm-up, paid 250–500 µs of JIT time per request, more than its own
/// cost; the connection-setup row, measured after 200 connections, about 0.5–0.9 ms of CPU per
/// connection). The rows are to measure the steady state of long-running nodes: after each round
/// the warm-up waits, without load, while the JIT still compiles, and it stops when a round makes it
/// compile next to nothing.
/// </summary>
internal static class JitWarmUp
{
    /// <summary>The longest the warm-up goes on when the JIT does not settle; the result then says how much it still compiled.</summary>
    private static readonly TimeSpan MaxDuration = TimeSpan.FromSeconds(45);

    /// <summary>A round that made the JIT compile fewer methods than this ends the warm-up.</summary>
    private const int SettledMethodsPerRound = 25;

    internal sealed record Result(int Rounds, TimeSpan Elapsed, long LastRoundMethods, TimeSpan Jit)
    {
        public bool Settled => LastRoundMethods < SettledMethodsPerRound;

        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"warm-up: {Rounds} rounds, {Elapsed.TotalSeconds:0.0} s, {Jit.TotalSeconds:0.0} s in the JIT; the last round compiled {LastRoundMethods} methods ({(Settled ? "settled" : "not settled: rows include JIT time")})");
    }

    /// <summary>Runs <paramref name="round"/> until a round (and the JIT's background work after it) compiles next to nothing.</summary>
    public static async Task<Result> UntilSettledAsync(Func<Task> round, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var jitBefore = JitInfo.GetCompilationTime();
        for (var rounds = 1; ; rounds++)
        {
            var methodsBefore = JitInfo.GetCompiledMethodCount();
            await round();
            await QuietAsync(ct);
            var methods = JitInfo.GetCompiledMethodCount() - methodsBefore;
            if (methods < SettledMethodsPerRound || Stopwatch.GetElapsedTime(started) >= MaxDuration || ct.IsCancellationRequested)
                return new Result(rounds, Stopwatch.GetElapsedTime(started), methods, JitInfo.GetCompilationTime() - jitBefore);
        }
    }

    /// <summary>Waits (up to a few seconds) until the JIT compiled nothing for a moment: its background work then competes with no load.</summary>
    private static async Task QuietAsync(CancellationToken ct)
    {
        var step = TimeSpan.FromMilliseconds(250);
        for (var waited = TimeSpan.Zero; waited < TimeSpan.FromSeconds(3) && !ct.IsCancellationRequested; waited += step)
        {
            var before = JitInfo.GetCompiledMethodCount();
            await Task.Delay(step, ct);
            if (JitInfo.GetCompiledMethodCount() == before) return;
        }
    }
}
