using MessagePack;

namespace P2PInference.TestKit.Conformance;

/// <summary>A MessagePack contract for the conformance suites' typed calls (MessagePack needs contract types to be public).</summary>
[MessagePackObject]
public sealed class ConformanceProbe
{
    [Key(0)]
    public string Text { get; set; } = "";

    [Key(1)]
    public byte[] Digest { get; set; } = [];
}
