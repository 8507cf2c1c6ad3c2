using MessagePack;
using P2PInference.Facilities.Rpc;

namespace P2PInference.Workers.Contracts.Auth;

/// <summary>The keys are the wire contract (fixtures/contracts): never renumber or reuse them.</summary>
[MessagePackObject]
public sealed class ValidateRequest
{
    /// <summary>This contract's MessagePack codec; it decodes network bytes as untrusted input.</summary>
    public static MessagePackRpcCodec<ValidateRequest> Parser => MessagePackRpcCodec<ValidateRequest>.Instance;

    private string? _apiKey;
    private string? _token;

    [Key(0)]
    public string? ApiKey
    {
        get => _apiKey;
        set
        {
            _apiKey = value;
            if (value is not null) _token = null;
        }
    }

    [Key(1)]
    public string? Token
    {
        get => _token;
        set
        {
            _token = value;
            if (value is not null) _apiKey = null;
        }
    }

    /// <summary>Which of the Credential members is set (setting one clears the others, as a protobuf oneof did).</summary>
    [IgnoreMember]
    public CredentialOneofCase CredentialCase => _apiKey is not null ? CredentialOneofCase.ApiKey : _token is not null ? CredentialOneofCase.Token : CredentialOneofCase.None;

    public byte[] ToByteArray() => Parser.ToByteArray(this);

    public enum CredentialOneofCase
    {
        None = 0,
        ApiKey = 1,
        Token = 2,
    }
}
