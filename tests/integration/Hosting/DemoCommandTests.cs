using System.Text.Json;
using P2PInference.Workers.Cli;

namespace P2PInference.Tests.Integration.Hosting;

/// <summary>The README's first command, in process: the whole network on TCP loopback and the client journey.</summary>
[CancelAfter(120_000)]
public sealed class DemoCommandTests
{
    [Test]
    public async Task Demo_WalksTheWholeJourney_AndExits0()
    {
        var output = new StringWriter();
        var error = new StringWriter();

        var code = await CliApp.RunAsync(["demo", "--json", "--prompt", "The river"], output, error);

        Assert.That(code, Is.EqualTo(0), error.ToString());
        using var summary = JsonDocument.Parse(output.ToString());
        var root = summary.RootElement;
        Assert.That(root.GetProperty("ok").GetBoolean(), Is.True);
        Assert.That(root.GetProperty("steps").EnumerateArray().Select(s => s.GetProperty("step").GetString()), Is.EqualTo(new[]
        {
            "start network", "connect client", "register", "login", "create API key", "stream inference", "infer (unary)",
        }));
        Assert.That(root.GetProperty("steps")[5].GetProperty("detail").GetString(), Does.StartWith("processor-"));
        Assert.That(root.GetProperty("output").GetString(), Is.Not.Empty);
        Assert.That(root.GetProperty("nodes").GetArrayLength(), Is.EqualTo(5));
    }

    [Test]
    public async Task Demo_PrintsTheStreamAndATable()
    {
        var output = new StringWriter();

        var code = await CliApp.RunAsync(["demo"], output, new StringWriter());

        Assert.That(code, Is.EqualTo(0));
        var text = output.ToString();
        Assert.That(text, Does.Contain("> The network"));
        Assert.That(text, Does.Contain("step             | latency ms | detail"));
        Assert.That(text, Does.Contain("stream inference |"));
    }
}
