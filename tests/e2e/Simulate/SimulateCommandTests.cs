using System.Text.Json;
using P2PInference.Workers.Cli;

namespace P2PInference.Tests.E2E.Simulate;

/// <summary>
/// <c>p2pinference simulate</c> run in-process as a user runs it: a small network (1 gateway, 2 processors,
/// 3 clients) on virtual time, judged by its exit code and its JSON report.
/// </summary>
[TestFixture]
public sealed class SimulateCommandTests
{
    private static readonly string[] Small = ["--gateways", "1", "--processors", "2", "--clients", "3", "--virtual-minutes", "1", "--json"];

    private sealed record Run(int Code, string Output, string Error)
    {
        public JsonElement Json => JsonDocument.Parse(Output).RootElement;

        public string TraceHash => Json.GetProperty("traceHash").GetString()!;
    }

    private static async Task<Run> SimulateAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = await CliApp.RunAsync(["simulate", .. args], output, error);
        return new Run(code, output.ToString(), error.ToString());
    }

    [Test]
    public async Task Simulate_SmallNetwork_HoldsEveryInvariantAndReportsItAsJson()
    {
        var run = await SimulateAsync(["--seed", "11", .. Small]);

        Assert.That(run.Code, Is.Zero, run.Output + run.Error);
        var json = run.Json;
        Assert.Multiple(() =>
        {
            Assert.That(json.GetProperty("seed").GetInt32(), Is.EqualTo(11));
            Assert.That(run.TraceHash, Does.Match("^[0-9a-f]{16}$"));
            Assert.That(json.GetProperty("virtualSeconds").GetDouble(), Is.GreaterThanOrEqualTo(60), "the clients ran for the virtual minute asked for");
            Assert.That(json.GetProperty("wallSeconds").GetDouble(), Is.GreaterThan(0));
            var invariants = json.GetProperty("invariants").EnumerateArray().ToList();
            Assert.That(invariants.Select(i => i.GetProperty("name").GetString()),
                Is.SupersetOf(new[] { "acknowledged-writes-kept", "typed-outcomes", "no-hang", "served-at-most-once", "auth-holds", "rate-limit-holds" }));
            Assert.That(invariants.Where(i => !i.GetProperty("ok").GetBoolean()).Select(i => i.GetProperty("name").GetString()), Is.Empty);
            Assert.That(json.GetProperty("requests").GetProperty("ok").GetInt64(), Is.GreaterThan(0), "the journey got answers");
            Assert.That(json.GetProperty("faults").EnumerateObject(), Is.Empty, "no faults unless asked for");
        });
    }

    [TestCase("cone")]
    [TestCase("symmetric")]
    public async Task Simulate_ProcessorsBehindNat_ReserveOnTheRelay_AndTheJourneyHoldsEveryInvariant(string nat)
    {
        // Three virtual minutes: AutoNAT concludes after 3 failed dial-backs (ConfidenceThreshold) from
        // the servers connected at each round (5 s, then every minute). In this small network that
        // takes one to three rounds, depending on who happens to be connected to a processor; since
        // clients keep the gateways they found instead of a DHT lookup per stream, it is three.
        string[] longer = [.. Small];
        longer[Array.IndexOf(longer, "--virtual-minutes") + 1] = "3";
        var first = await SimulateAsync(["--seed", "5", "--nat", nat, .. longer]);
        var second = await SimulateAsync(["--seed", "5", "--nat", nat, .. longer]);

        Assert.That(first.Code, Is.Zero, first.Output + first.Error);
        var json = first.Json;
        Assert.Multiple(() =>
        {
            Assert.That(json.GetProperty("nat").GetProperty("kind").GetString(), Is.EqualTo(nat));
            Assert.That(json.GetProperty("nat").GetProperty("behindNat").GetInt32(), Is.EqualTo(2));
            Assert.That(json.GetProperty("nat").GetProperty("reserved").GetInt32(), Is.EqualTo(2), "every processor behind NAT holds a relay slot");
            if (nat == "cone")
                Assert.That(json.GetProperty("nat").GetProperty("autoNatPrivate").GetInt32(), Is.EqualTo(2), "AutoNAT's dial-backs are dropped by the NAT, so it says private");
            Assert.That(json.GetProperty("requestsByKind").GetProperty("infer").GetProperty("ok").GetInt64(), Is.GreaterThan(0), "inference reached processors behind NAT");
            Assert.That(json.GetProperty("replay").GetString(), Does.EndWith($"--nat {nat}"));
            Assert.That(second.TraceHash, Is.EqualTo(first.TraceHash), "one seed replays the run, NAT and relay included");
        });
    }

    [Test]
    public async Task Simulate_UnknownNatKind_IsRefusedWithTheChoices()
    {
        var run = await SimulateAsync(["--nat", "carrier-grade", .. Small]);

        Assert.That(run.Code, Is.EqualTo(1));
        Assert.That(run.Error, Does.Contain("--nat: 'carrier-grade' is not a NAT kind; use none, cone or symmetric"));
    }

    [Test]
    public async Task Simulate_SameSeedTwice_GivesTheSameTraceHash()
    {
        var first = await SimulateAsync(["--seed", "21", .. Small]);
        var second = await SimulateAsync(["--seed", "21", .. Small]);

        Assert.That(second.TraceHash, Is.EqualTo(first.TraceHash), "one seed replays the whole run");
        Assert.That(second.Json.GetProperty("requests").ToString(), Is.EqualTo(first.Json.GetProperty("requests").ToString()));
    }

    [Test]
    public async Task Simulate_AnotherSeed_TakesAnotherTrace()
    {
        var first = await SimulateAsync(["--seed", "31", .. Small]);
        var second = await SimulateAsync(["--seed", "32", .. Small]);

        Assert.That(second.TraceHash, Is.Not.EqualTo(first.TraceHash));
    }

    [Test]
    public async Task Simulate_UnderCrashesAndPartitions_InvariantsStillHold()
    {
        var run = await SimulateAsync("--seed", "3", "--gateways", "1", "--processors", "2", "--clients", "3", "--virtual-minutes", "3",
            "--faults", "crash,partition", "--json");

        Assert.That(run.Code, Is.Zero, run.Output + run.Error);
        var faults = run.Json.GetProperty("faults").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32());
        Assert.That(faults.Values.Sum(), Is.GreaterThan(0), "faults were injected");
        Assert.That(faults.Keys, Is.SubsetOf(new[] { "crash", "partition" }));
    }

    [TestCase("--processors", "-1", "--processors")]
    [TestCase("--faults", "bogus", "bogus")]
    [TestCase("--schedule", "sideways", "sideways")]
    [TestCase("--virtual-minutes", "0", "--virtual-minutes")]
    public async Task Simulate_WithABadOption_SaysWhatIsWrongOnOneLineAndFails(string option, string value, string named)
    {
        var run = await SimulateAsync(option, value);

        Assert.That(run.Code, Is.Not.Zero);
        Assert.That(run.Output, Is.Empty);
        Assert.That(run.Error.TrimEnd().Split('\n'), Has.Length.EqualTo(1));
        Assert.That(run.Error, Does.StartWith("error: ").And.Contain(named));
    }
}
