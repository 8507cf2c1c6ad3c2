using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Inference;

/// <summary>
/// One message of a chat: <see cref="Role"/> is <c>system</c>, <c>user</c> or <c>assistant</c>
/// (<see cref="InferMessageRoles"/>). The keys are the wire contract (fixtures/contracts): never renumber or reuse them.
/// </summary>
[MessagePackObject]
public sealed class InferMessage
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<InferMessage> Parser => MessagePackRpcCodec<InferMessage>.Instance;

    [Key(0)]
    public string Role { get; set; } = "";

    [Key(1)]
    public string Content { get; set; } = "";

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
