using System.Diagnostics;
using System.Text.Json.Nodes;
using P2PInference.Tests.Shared;

namespace P2PInference.Tests.E2E.OpenAi;

/// <summary>
/// <c>client serve</c> driven by the official <c>openai</c> npm package, stock (tests/interop-js,
/// openai-client.mjs): a JavaScript user's chat, stream, abort mid-stream — which the processor two
/// hops away sees as a cancel — and an unknown key. Real processes and sockets: each wait is bounded.
/// </summary>
[TestFixture]
[NonParallelizable]
[CancelAfter(240_000)]
public sealed class OpenAiNpmClientTests
{
    private static readonly TimeSpan ScriptTimeout = TimeSpan.FromSeconds(90);

    private ServedNetwork _served = null!;
    private string _jsDirectory = null!;

    [OneTimeSetUp]
    public async Task StartAsync()
    {
        _jsDirectory = JsPeerInstall.EnsureInstalled();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        _served = await ServedNetwork.StartAsync(timeout.Token);
    }

    [OneTimeTearDown]
    public async Task StopAsync()
    {
        if (_served is not null) await _served.DisposeAsync();
    }

    [Test]
    public async Task Chat_Unary_ReturnsACompletionWithUsage(CancellationToken ct)
    {
        var result = await RunAsync("chat", await _served.Network.NewApiKeyAsync(ct), "The network", ct);

        Assert.Multiple(() =>
        {
            Assert.That((string?)result["object"], Is.EqualTo("chat.completion"));
            Assert.That((string?)result["text"], Is.Not.Empty);
            Assert.That((string?)result["finish"], Is.AnyOf("stop", "length"));
            Assert.That((int?)result["completionTokens"], Is.GreaterThan(0));
        });
    }

    [Test]
    public async Task Chat_Streamed_GivesTheSameTextAsUnary_AndUsageAtTheEnd(CancellationToken ct)
    {
        var key = await _served.Network.NewApiKeyAsync(ct);
        var whole = await RunAsync("chat", key, "Peers find", ct);
        var streamed = await RunAsync("stream", key, "Peers find", ct);

        Assert.Multiple(() =>
        {
            Assert.That((int?)streamed["chunks"], Is.GreaterThan(1), "a stream of chunks");
            Assert.That((string?)streamed["text"], Is.EqualTo((string?)whole["text"]), "greedy: the same text either way");
            Assert.That((string?)streamed["finish"], Is.EqualTo((string?)whole["finish"]));
            Assert.That((int?)streamed["completionTokens"], Is.EqualTo((int?)whole["completionTokens"]));
        });
    }

    [Test]
    public async Task Abort_MidStream_CancelsTheGenerationOnTheProcessor(CancellationToken ct)
    {
        var marker = "npm abort " + Guid.NewGuid().ToString("N");
        var cancelled = _served.Network.Engine.CancelledAsync(marker);

        var key = await _served.Network.NewApiKeyAsync(ct);
        var mark = _served.Network.Log.Mark();
        var result = await RunAsync("abort", key, marker, ct);
        try
        {
            await cancelled.WaitAsync(ScriptTimeout, ct);
        }
        catch (TimeoutException)
        {
            // Where the cancel stopped: what client serve, the gateway and the processors logged since the request.
            Assert.Fail($"no processor saw the cancel within {ScriptTimeout.TotalSeconds} s; the client saw {result.ToJsonString()}; the network logged:\n"
                + string.Join('\n', _served.Network.Log.Since(mark)));
        }

        Assert.Multiple(() =>
        {
            Assert.That((bool?)result["aborted"], Is.True, result.ToJsonString());
            Assert.That((string?)result["error"], Is.Null, "the package ends the stream quietly on an abort");
            Assert.That((int?)result["chunks"], Is.LessThan(500), "the stream stopped long before its 500 tokens");
            Assert.That(cancelled.IsCompletedSuccessfully, Is.True, "the processor's engine saw the cancel, two hops away");
        });
    }

    [Test]
    public async Task UnknownKey_IsAnApiError401_OfTypeAuthenticationError(CancellationToken ct)
    {
        var result = await RunAsync("error", "sk-not-a-key", "The network", ct);

        Assert.Multiple(() =>
        {
            Assert.That((bool?)result["isApiError"], Is.True);
            Assert.That((int?)result["status"], Is.EqualTo(401));
            Assert.That((string?)result["type"], Is.EqualTo("authentication_error"));
        });
    }

    private async Task<JsonObject> RunAsync(string mode, string apiKey, string prompt, CancellationToken ct)
    {
        var info = new ProcessStartInfo("node")
        {
            WorkingDirectory = _jsDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "openai-client.mjs", _served.Server.Address.ToString(), apiKey, mode, prompt }) info.ArgumentList.Add(argument);
        using var process = Process.Start(info) ?? throw new InvalidOperationException("node did not start");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(ScriptTimeout);
        var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        var output = (await stdout).Trim();
        Assert.That(process.ExitCode, Is.Zero, $"openai-client.mjs {mode} failed: {output} {await stderr}");
        return JsonNode.Parse(output.Split('\n')[^1])!.AsObject();
    }
}
