using System.Runtime.CompilerServices;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.E2E.Workers;

/// <summary>
/// The real builtin engine behind an <see cref="EngineGate"/>: what it generates is the builtin model's
/// output, token for token; the gate only decides when a token is let out, so a test can crash a
/// processor at an exact point of a stream.
/// </summary>
internal sealed class GatedEngine(IInferenceEngine inner, EngineGate gate, string node) : IInferenceEngine
{
    public string Kind => inner.Kind;

    public IReadOnlyList<ModelInfo> Models => inner.Models;

    public Task InitializeAsync(CancellationToken cancellationToken) => inner.InitializeAsync(cancellationToken);

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(InferenceRequest request, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var produced = 0;
        await foreach (var token in inner.GenerateAsync(request, cancellationToken))
        {
            await gate.PassAsync(node, produced, cancellationToken);
            produced++;
            yield return token;
        }
    }

    // The inner engine is shared by the cluster's processors; the cluster disposes it.
    public void Dispose()
    {
    }
}
