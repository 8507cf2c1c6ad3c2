using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class CreateApiKeyResponse
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<CreateApiKeyResponse> Parser => MessagePackRpcCodec<CreateApiKeyResponse>.Instance;

    [Key(0)]
    public string KeyId { get; set; } = "";

    /// <summary>The secret, shown only in this response: the worker keeps only its SHA-256 hash.</summary>
    [Key(1)]
    public string ApiKey { get; set; } = "";

    [Key(2)]
    public string Name { get; set; } = "";

    [Key(3)]
    public long CreatedAtUnixMs { get; set; }

    public byte[] ToByteArray() => Parser.ToByteArray(this);
}
