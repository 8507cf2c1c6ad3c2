using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Inference;

/// <summary>
/// One inference: a chat (<see cref="Messages"/>) or, as a shorthand, one <see cref="Prompt"/> to
/// continue; a request carries one or the other. Unset numbers (0, null) mean the model's default.
/// The keys are the wire contract (fixtures/contracts): never renumber or reuse them.
/// </summary>
[MessagePackObject]
public sealed class InferRequest
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<InferRequest> Parser => MessagePackRpcCodec<InferRequest>.Instance;

    /// <summary>Set by the client or the gateway; appears in every hop's logs.</summary>
    [Key(0)]
    public string RequestId { get; set; } = "";

    [Key(1)]
    public string Model { get; set; } = "";

    /// <summary>The text to continue; empty when <see cref="Messages"/> are given.</summary>
    [Key(2)]
    public string Prompt { get; set; } = "";

    /// <summary>The most tokens to generate; 0: the model's limit.</summary>
    [Key(3)]
    public int MaxTokens { get; set; }

    [Key(4)]
    public double Temperature { get; set; }

    [Key(5)]
    public long? Seed { get; set; }

    /// <summary>Generation ends before the first of these would be emitted.</summary>
    [Key(6)]
    public List<string> Stop { get; init; } = [];

    /// <summary>The chat (system, user, assistant); when given, <see cref="Prompt"/> is empty.</summary>
    [Key(7)]
    public List<InferMessage> Messages { get; init; } = [];

    /// <summary>Nucleus sampling: only the likeliest tokens whose probabilities add up to this are drawn from; null: 1 (all).</summary>
    [Key(8)]
    public double? TopP { get; set; }

    /// <summary>True when the request is a chat rather than a single prompt.</summary>
    [IgnoreMember]
    public bool IsChat => Messages.Count > 0;

    /// <summary>Characters of text the request asks the model to read: the prompt, or every message's content.</summary>
    [IgnoreMember]
    public long InputLength => IsChat ? Messages.Sum(m => (long)(m?.Content?.Length ?? 0)) : Prompt.Length;

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
