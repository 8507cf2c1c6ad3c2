using P2PInference.Facilities.Identity;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Workers.Processor;

/// <summary>
/// The <c>Processor</c> section of a processor's configuration: the engine, how much work runs at
/// once, who may ask for it, and the input limits that keep one caller from eating the node.
/// </summary>
public sealed class ProcessorOptions
{
    public const int MaxRequestIdLength = 128;

    /// <summary>The most messages one chat request may carry.</summary>
    public const int MaxMessages = 256;

    /// <summary>The inference engine and the models it serves.</summary>
    public EngineOptions Engine { get; set; } = new();

    /// <summary>Generations running at once; more wait in the queue.</summary>
    public int MaxConcurrency { get; set; } = 4;

    /// <summary>Requests waiting for a slot (first come, first served); past it callers get ResourceExhausted. 0: no queue.</summary>
    public int MaxQueue { get; set; } = 32;

    /// <summary>PeerIds (base58) allowed to call infer and inferStream. Empty: everyone.</summary>
    public List<string> AllowedPeers { get; set; } = [];

    /// <summary>The longest prompt (or all of a chat's messages together) accepted, in characters (checked before the engine's token limit).</summary>
    public int MaxPromptLength { get; set; } = 64 * 1024;

    /// <summary>Requests asking for more tokens get this many; 0 asked means the smaller of this and 128.</summary>
    public int MaxTokensCap { get; set; } = 1024;

    /// <summary>What a caller turned away by a full queue is told to wait before retrying.</summary>
    public TimeSpan QueueFullRetryAfter { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Every problem with these options, one sentence each; empty when they can work.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (MaxConcurrency < 1) errors.Add($"Processor:MaxConcurrency must be at least 1 (was {MaxConcurrency}).");
        if (MaxQueue < 0) errors.Add($"Processor:MaxQueue must be 0 or more (was {MaxQueue}).");
        if (MaxPromptLength < 1) errors.Add($"Processor:MaxPromptLength must be at least 1 (was {MaxPromptLength}).");
        if (MaxTokensCap < 1) errors.Add($"Processor:MaxTokensCap must be at least 1 (was {MaxTokensCap}).");
        if (QueueFullRetryAfter < TimeSpan.Zero) errors.Add($"Processor:QueueFullRetryAfter must not be negative (was {QueueFullRetryAfter}).");
        if (Engine is null) errors.Add("Processor:Engine is missing.");
        foreach (var peer in AllowedPeers ?? [])
        {
            if (!TryParsePeer(peer, out _))
                errors.Add($"Processor:AllowedPeers entry '{peer}' is not a PeerId (expected base58, e.g. 12D3KooW…).");
        }
        return errors;
    }

    /// <summary>Throws <see cref="ProcessorConfigurationException"/> listing every problem.</summary>
    public void ThrowIfInvalid()
    {
        var errors = Validate();
        if (errors.Count > 0) throw new ProcessorConfigurationException(errors);
    }

    /// <summary>The allow-list as PeerIds, or null when everyone is allowed.</summary>
    internal IReadOnlySet<PeerId>? ParseAllowedPeers()
    {
        if (AllowedPeers is not { Count: > 0 }) return null;
        var set = new HashSet<PeerId>();
        foreach (var text in AllowedPeers)
        {
            if (TryParsePeer(text, out var peer)) set.Add(peer!);
        }
        return set;
    }

    private static bool TryParsePeer(string? text, out PeerId? peer)
    {
        peer = null;
        if (string.IsNullOrWhiteSpace(text)) return false;
        try
        {
            peer = PeerId.Parse(text.Trim());
            return true;
        }
        catch (Exception e) when (e is FormatException or ArgumentException)
        {
            return false;
        }
    }
}
