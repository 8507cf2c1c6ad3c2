using MessagePack;

namespace P2PInference.Facilities.Rpc;

/// <summary>The MessagePack settings of everything our own protocols carry: the RPC envelope and the worker contracts.</summary>
public static class MessagePackWire
{
    /// <summary>
    /// Deepest nesting accepted from the network. Our contracts nest three levels at most; the
    /// limit keeps a crafted message (thousands of nested arrays) from exhausting the stack.
    /// </summary>
    public const int MaxDepth = 32;

    /// <summary>
    /// For bytes from the network: collision-resistant hashing for maps and the depth limit
    /// (MessagePack's own default trusts its input).
    /// </summary>
    public static MessagePackSerializerOptions Untrusted { get; } =
        MessagePackSerializerOptions.Standard.WithSecurity(MessagePackSecurity.UntrustedData.WithMaximumObjectGraphDepth(MaxDepth));

    /// <summary>For what we write ourselves.</summary>
    public static MessagePackSerializerOptions Trusted { get; } = MessagePackSerializerOptions.Standard;
}
