using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Rpc.Wire;
using P2PInference.Tests.Integration.Interop;
using P2PInference.Tests.Shared;

namespace P2PInference.Tests.Integration.Trust;

/// <summary>
/// Stock js-libp2p nodes (tests/interop-js/rogue.mjs, one child process) that join the DHT through a
/// bootstrap node, provide worker topics and record every byte that reaches them on the RPC protocol.
/// Each answers every RPC stream with the response frame it was given (say, a bad grant).
/// </summary>
internal sealed class JsRogues : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr;

    private JsRogues(Process process, StringBuilder stderr, IReadOnlyDictionary<string, string> peerIds)
    {
        _process = process;
        _stderr = stderr;
        PeerIds = peerIds;
    }

    /// <summary>Each rogue's PeerId by name.</summary>
    public IReadOnlyDictionary<string, string> PeerIds { get; }

    public string Diagnostics
    {
        get
        {
            lock (_stderr) return _stderr.ToString();
        }
    }

    /// <summary>One rogue: its name, the Ed25519 seed of its key, the topics it provides and the frame it answers RPC streams with.</summary>
    public sealed record Spec(string Name, byte[] Seed, IReadOnlyList<string> Topics, byte[] Answer);

    /// <summary>An RPC stream a rogue accepted and every byte that arrived on it.</summary>
    public sealed record ReceivedStream(string Rogue, string From, string Protocol, byte[] Bytes);

    /// <summary>The frame a callee sends back from a unary call that succeeded with <paramref name="payload"/>.</summary>
    public static byte[] AnswerFrame(ReadOnlyMemory<byte> payload)
    {
        var body = MessagePackRpcCodec<ResponseFrame>.Instance.ToByteArray(new ResponseFrame { Payload = payload });
        return [.. Varint.Encode((ulong)body.Length), .. body];
    }

    /// <summary>Starts the rogues and returns once each has joined through <paramref name="bootstrap"/> and provided its topics.</summary>
    public static async Task<JsRogues> StartAsync(string directory, string bootstrap, IReadOnlyList<Spec> rogues, CancellationToken cancellationToken)
    {
        var config = Path.Combine(directory, "js-rogues.json");
        await File.WriteAllTextAsync(config, JsonSerializer.Serialize(new
        {
            bootstrap,
            rogues = rogues.Select(r => new { name = r.Name, seed = Convert.ToHexString(r.Seed), topics = r.Topics, answer = Convert.ToHexString(r.Answer) }),
        }), cancellationToken);
        var process = JsPeer.StartNode(["rogue.mjs", "--config", config]);
        var stderr = new StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (stderr) stderr.AppendLine(e.Data);
        };
        process.BeginErrorReadLine();
        var line = await process.StandardOutput.ReadLineAsync(cancellationToken);
        var ready = line is null ? null : JsonNode.Parse(line);
        if (ready?["event"]?.GetValue<string>() != "ready")
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(cancellationToken);
            string text;
            lock (stderr) text = stderr.ToString();
            process.Dispose();
            throw new InvalidOperationException($"the js-libp2p rogues did not start ({line ?? "no output"}):\n{text}");
        }
        var peerIds = ready["rogues"]!.AsArray().ToDictionary(r => (string)r!["name"]!, r => (string)r!["peerId"]!);
        return new JsRogues(process, stderr, peerIds);
    }

    /// <summary>Every RPC stream the rogues accepted so far, with what arrived on it.</summary>
    public async Task<IReadOnlyList<ReceivedStream>> ReceivedAsync(CancellationToken cancellationToken)
    {
        await _process.StandardInput.WriteLineAsync("""{"cmd":"received"}""".AsMemory(), cancellationToken);
        await _process.StandardInput.FlushAsync(cancellationToken);
        var line = await _process.StandardOutput.ReadLineAsync(cancellationToken)
            ?? throw new InvalidOperationException("the js-libp2p rogues exited:\n" + Diagnostics);
        var answer = JsonNode.Parse(line)!;
        if (answer["ok"]?.GetValue<bool>() != true) throw new InvalidOperationException("the js-libp2p rogues failed: " + line);
        return answer["streams"]!.AsArray()
            .Select(s => new ReceivedStream((string)s!["rogue"]!, (string)s["from"]!, (string)s["protocol"]!, Convert.FromHexString((string)s["hex"]!)))
            .ToArray();
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            _process.StandardInput.Close();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}
