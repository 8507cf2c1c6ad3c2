using System.Threading.Channels;
using P2PInference.TestKit.Simulation;

namespace P2PInference.Tests.Unit.Simulation;

[TestFixture]
public sealed class SimulationExecutorTests
{
    /// <summary>Workers that wait random virtual delays and contend for a semaphore and a channel; returns what happened, in order.</summary>
    private static string RandomizedWorkload(SimulationExecutor sim) => sim.Run(async () =>
    {
        var log = new List<string>();
        using var gate = new SemaphoreSlim(1);
        var channel = Channel.CreateUnbounded<int>();
        var reader = ReadAllAsync();
        var workers = Enumerable.Range(0, 5).Select(async id =>
        {
            for (var round = 0; round < 4; round++)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(sim.Random.Next(1, 50)), sim.Clock);
                await gate.WaitAsync();
                try
                {
                    log.Add($"{sim.Clock.Elapsed.TotalMilliseconds}:{id}.{round}");
                    await Task.Yield();
                }
                finally
                {
                    gate.Release();
                }
                await channel.Writer.WriteAsync(id);
            }
        }).ToArray();
        await Task.WhenAll(workers);
        channel.Writer.Complete();
        log.Add($"read {await reader}");
        return string.Join(' ', log);

        // Not ReadAllAsync: the BCL implements it with ConfigureAwait(false), which leaves the simulation thread.
        async Task<int> ReadAllAsync()
        {
            var count = 0;
            while (await channel.Reader.WaitToReadAsync())
                while (channel.Reader.TryRead(out _)) count++;
            return count;
        }
    });

    [Test]
    public void Run_WithTheSameSeed_ReplaysTheSameTraceHashAndEvents()
    {
        var first = new SimulationExecutor(seed: 4242);
        var second = new SimulationExecutor(seed: 4242);

        var firstLog = RandomizedWorkload(first);
        var secondLog = RandomizedWorkload(second);

        Assert.That(second.TraceHash, Is.EqualTo(first.TraceHash), $"{first} vs {second}");
        Assert.That(second.Steps, Is.EqualTo(first.Steps));
        Assert.That(secondLog, Is.EqualTo(firstLog));
    }

    /// <summary>
    /// A diagnostics tool that listens to the TPL event source (dotnet-trace with its providers, an IDE,
    /// an in-process EventListener) makes the runtime wrap await continuations and box async methods in
    /// other types. The schedule is the same, so the trace hash must be too: a process being traced
    /// must not report another hash for the seed from the moment the listener attaches.
    /// </summary>
    [Test]
    [NonParallelizable]
    public void Run_WhileAListenerTracesTasks_ReplaysTheSameTraceHash()
    {
        var quiet = new SimulationExecutor(seed: 4242);
        var quietLog = RandomizedWorkload(quiet);

        var traced = new SimulationExecutor(seed: 4242);
        string tracedLog;
        using (var listener = new TaskEventListener())
        {
            Assert.That(listener.Enabled, Is.True, "the TPL event source was not found, so nothing was traced");
            tracedLog = RandomizedWorkload(traced);
        }

        Assert.That(tracedLog, Is.EqualTo(quietLog));
        Assert.That(traced.Steps, Is.EqualTo(quiet.Steps));
        Assert.That(traced.TraceHash, Is.EqualTo(quiet.TraceHash), $"{quiet} vs {traced}");
    }

    [Test]
    public void Run_WithATraceDumpPath_WritesEachStepWithTheHashSoFar()
    {
        var path = Path.Combine(Path.GetTempPath(), $"p2p-trace-{Guid.NewGuid():N}.txt");
        try
        {
            var sim = new SimulationExecutor(new SimulationOptions { Seed = 4242, TraceDumpPath = path });
            RandomizedWorkload(sim);

            var lines = File.ReadAllLines(path);
            Assert.That(lines, Has.Length.EqualTo(sim.Steps));
            Assert.That(lines[^1].Split(' ')[6], Is.EqualTo(sim.TraceHash.ToString("x16", System.Globalization.CultureInfo.InvariantCulture)));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Enables every keyword of the TPL event source, as a tracing tool asking for task events does.</summary>
    private sealed class TaskEventListener : System.Diagnostics.Tracing.EventListener
    {
        public bool Enabled { get; private set; }

        protected override void OnEventSourceCreated(System.Diagnostics.Tracing.EventSource eventSource)
        {
            if (eventSource.Name != "System.Threading.Tasks.TplEventSource") return;
            EnableEvents(eventSource, System.Diagnostics.Tracing.EventLevel.Verbose, System.Diagnostics.Tracing.EventKeywords.All);
            Enabled = true;
        }
    }

    /// <summary>
    /// The runtime runs a continuation inline only while enough stack is left (128 KB), and queues it
    /// otherwise: when a chain of continuations ran on the caller's stack, the schedule (and the trace
    /// hash) depended on how deep the caller was and how large its thread's stack, so one seed replayed
    /// differently from a test, the CLI or a benchmark.
    /// </summary>
    [Test]
    public void Run_FromADeepStackOnASmallThread_ReplaysTheTraceOfATestsShallowOne()
    {
        var shallow = ChainOfInlineContinuations(seed: 4242);
        SimulationExecutor? deep = null;
        Exception? failure = null;
        // A caller on a thread of 1 MB (another host's main or worker thread), 600 KB into its stack.
        var caller = new Thread(() =>
        {
            try
            {
                deep = WithStackUsed(600, () => ChainOfInlineContinuations(seed: 4242));
            }
            catch (Exception e)
            {
                failure = e;
            }
        }, 1024 * 1024);
        caller.Start();
        caller.Join();

        Assert.That(failure, Is.Null);
        Assert.That(deep!.Steps, Is.EqualTo(shallow.Steps), $"{shallow} vs {deep}");
        Assert.That(deep.TraceHash, Is.EqualTo(shallow.TraceHash), $"{shallow} vs {deep}");
    }

    /// <summary>Completing the first link runs every other one inline, each inside the one before: about 640 KB of stack.</summary>
    private static SimulationExecutor ChainOfInlineContinuations(int seed)
    {
        const int Links = 1000;
        var sim = new SimulationExecutor(seed);
        sim.Run(async () =>
        {
            // Continuations run synchronously (no RunContinuationsAsynchronously), so each link completes the next inline.
            var sources = Enumerable.Range(0, Links + 1).Select(_ => new TaskCompletionSource()).ToArray();
            var links = Enumerable.Range(0, Links).Select(i => LinkAsync(sources[i], sources[i + 1])).ToArray();
            await Task.Yield();
            sources[0].SetResult();
            await sources[Links].Task;
            await Task.WhenAll(links);
        });
        return sim;

        static async Task LinkAsync(TaskCompletionSource from, TaskCompletionSource to)
        {
            await from.Task;
            to.SetResult();
        }
    }

    /// <summary>Runs <paramref name="action"/> with about <paramref name="kilobytes"/> KB of the current thread's stack in use.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static T WithStackUsed<T>(int kilobytes, Func<T> action)
    {
        Span<byte> frame = stackalloc byte[1024];
        frame[^1] = (byte)kilobytes;
        var result = kilobytes <= 1 ? action() : WithStackUsed(kilobytes - 1, action);
        GC.KeepAlive(frame[^1]);
        return result;
    }

    [Test]
    public void Run_WithAnotherSeed_GivesAnotherTraceHash()
    {
        var first = new SimulationExecutor(seed: 1);
        var second = new SimulationExecutor(seed: 2);

        RandomizedWorkload(first);
        RandomizedWorkload(second);

        Assert.That(second.TraceHash, Is.Not.EqualTo(first.TraceHash));
    }

    [Test]
    public void Run_UnderTheRandomStrategy_ReplaysPerSeed_AndDiffersAcrossSeeds()
    {
        var hashes = new[] { 7, 7, 8 }.Select(seed =>
        {
            var sim = new SimulationExecutor(seed, ScheduleStrategy.Random);
            RandomizedWorkload(sim);
            return sim.TraceHash;
        }).ToArray();

        Assert.That(hashes[1], Is.EqualTo(hashes[0]));
        Assert.That(hashes[2], Is.Not.EqualTo(hashes[0]));
    }

    [Test]
    public void Run_AnHourOfDelays_JumpsToEachDueTimeInOrder()
    {
        var sim = new SimulationExecutor(seed: 1);

        var ticks = sim.Run(async () =>
        {
            var seen = new List<(TimeSpan At, string Who)>();
            async Task TickAsync(string who, TimeSpan every)
            {
                while (sim.Clock.Elapsed + every <= TimeSpan.FromHours(1))
                {
                    await Task.Delay(every, sim.Clock);
                    seen.Add((sim.Clock.Elapsed, who));
                }
            }
            await Task.WhenAll(TickAsync("7s", TimeSpan.FromSeconds(7)), TickAsync("11s", TimeSpan.FromSeconds(11)), TickAsync("5s", TimeSpan.FromSeconds(5)));
            return seen;
        });

        Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromHours(1)));
        Assert.That(ticks.Count(t => t.Who == "5s"), Is.EqualTo(720));
        Assert.That(ticks.Count(t => t.Who == "7s"), Is.EqualTo(3600 / 7));
        Assert.That(ticks.Select(t => t.At), Is.Ordered, "every delay completes at its due time, earliest first");
        Assert.That(ticks.Where(t => t.At == TimeSpan.FromSeconds(77)).Select(t => t.Who), Is.EqualTo(new[] { "11s", "7s" }),
            "timers due at the same instant fire in the order they were armed (at 66 s, then 70 s)");
    }

    [Test]
    public void Primitives_ResumeOnTheSimulationThread()
    {
        var sim = new SimulationExecutor(seed: 3);
        var threads = new List<int>();
        var contexts = new List<SynchronizationContext?>();
        void Note()
        {
            threads.Add(Environment.CurrentManagedThreadId);
            contexts.Add(SynchronizationContext.Current);
        }

        sim.Run(async () =>
        {
            Note();
            // Each waiter suspends first, then main releases it from another step.
            using var semaphore = new SemaphoreSlim(0);
            var afterSemaphore = ThenNoteAsync(semaphore.WaitAsync());
            await Task.Yield();
            semaphore.Release();
            await afterSemaphore;

            var channel = Channel.CreateBounded<int>(1);
            // Awaited directly: ValueTask.AsTask() on a channel operation completes on the thread pool.
            var afterChannel = ThenNoteValueAsync(channel.Reader.ReadAsync());
            await Task.Yield();
            await channel.Writer.WriteAsync(1);
            await afterChannel;

            var signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var afterSignal = ThenNoteAsync(signal.Task);
            await Task.Yield();
            signal.SetResult();
            await afterSignal;

            await Task.Yield();
            Note();

            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30), sim.Clock);
            var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            await using (timeout.Token.Register(() => cancelled.SetResult()))
                await ThenNoteAsync(cancelled.Task);
            Assert.That(sim.Clock.Elapsed, Is.EqualTo(TimeSpan.FromSeconds(30)));

            await ThenNoteAsync(Task.Delay(TimeSpan.FromSeconds(1), sim.Clock));
        });

        Assert.That(threads, Has.Count.EqualTo(7));
        Assert.That(threads.Distinct(), Is.EqualTo(new[] { threads[0] }), "every continuation ran on the simulation thread");
        Assert.That(contexts, Has.All.SameAs(sim.SynchronizationContext));

        async Task ThenNoteAsync(Task task)
        {
            await task;
            Note();
        }

        async Task ThenNoteValueAsync<T>(ValueTask<T> task)
        {
            await task;
            Note();
        }
    }
}
