using System.Reflection;
using MessagePack;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Workers.Gateway;

/// <summary>What an inference request must look like before the gateway spends a processor on it.</summary>
internal static class InferRequestRules
{
    public const int MaxModelNameLength = 128;
    public const int MaxRequestIdLength = 128;
    public const int MaxStopSequences = 16;
    public const int MaxStopSequenceLength = 256;
    public const double MaxTemperature = 2.0;
    public const int MaxMessages = 256;

    /// <summary>Room in a request for everything but the prompt (model, id, stop sequences, framing).</summary>
    public const int RequestOverheadBytes = 64 * 1024;

    /// <summary>The largest payload worth parsing: a prompt of the maximum length in UTF-8 (at most 3 bytes a UTF-16 unit) and the rest.</summary>
    public static long MaxPayloadBytes(GatewayOptions options) => (long)options.MaxPromptLength * 3 + RequestOverheadBytes;

    /// <summary>Members of <see cref="InferRequest"/> this build knows: one past its highest key.</summary>
    private static readonly int KnownRequestMembers = typeof(InferRequest).GetProperties()
        .Select(p => p.GetCustomAttribute<KeyAttribute>()?.IntKey ?? -1).Max() + 1;

    /// <summary>
    /// Whether <paramref name="payload"/>, which decoded to <paramref name="request"/>, holds nothing but
    /// what this gateway read and checked: a prompt request (a chat's messages are contracts of their own)
    /// of at most the members it knows. Members of a newer contract version would otherwise reach a
    /// processor that may understand them without this gateway having checked them.
    /// </summary>
    public static bool HoldsOnlyKnownMembers(InferRequest request, ReadOnlyMemory<byte> payload)
    {
        if (request.IsChat) return false;
        var reader = new MessagePackReader(payload);
        return reader.NextMessagePackType == MessagePackType.Array && reader.ReadArrayHeader() <= KnownRequestMembers;
    }

    public static bool IsValidModelName(string name) =>
        name.Length is >= 1 and <= MaxModelNameLength && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or ':' or '/');

    public static bool IsValidRequestId(string id) =>
        id.Length is >= 1 and <= MaxRequestIdLength && id.All(c => c is > ' ' and <= '~');

    /// <summary>
    /// max_tokens as forwarded to one processor: what the caller asked for (already at most the cap), or,
    /// when unset, the model's limit that processor advertised, lowered to the gateway's cap. The cap
    /// only ever lowers a limit. A processor that advertised nothing gets it unset and applies its own.
    /// </summary>
    public static int ForwardedMaxTokens(int requested, int advertised, GatewayOptions options) =>
        requested > 0 ? Math.Min(requested, options.MaxTokensCap)
        : advertised > 0 ? Math.Min(advertised, options.MaxTokensCap)
        : 0;

    /// <summary>Checks <paramref name="request"/> and fills in what the gateway decides: the model; lowers max_tokens to the cap.</summary>
    /// <exception cref="RpcException"><see cref="RpcStatusCode.InvalidArgument"/> naming the field.</exception>
    public static void Normalize(InferRequest request, GatewayOptions options)
    {
        if (request.RequestId.Length > 0 && !IsValidRequestId(request.RequestId))
            throw Invalid($"request_id must be 1 to {MaxRequestIdLength} printable ASCII characters without spaces");
        if (request.Model.Length == 0)
        {
            if (string.IsNullOrEmpty(options.DefaultModel)) throw Invalid("model is required");
            request.Model = options.DefaultModel;
        }
        if (!IsValidModelName(request.Model))
            throw Invalid($"model must be 1 to {MaxModelNameLength} letters, digits or '.', '_', '-', ':', '/'");
        if (request.IsChat)
        {
            if (request.Prompt.Length > 0) throw Invalid("give either prompt or messages, not both");
            if (request.Messages.Count > MaxMessages) throw Invalid($"at most {MaxMessages} messages; there are {request.Messages.Count}");
            for (var i = 0; i < request.Messages.Count; i++)
                if (!InferMessageRoles.IsKnown(request.Messages[i].Role))
                    throw Invalid($"messages[{i}].role must be system, user or assistant");
            if (request.Messages.All(m => string.IsNullOrWhiteSpace(m.Content))) throw Invalid("messages have no content");
        }
        else if (string.IsNullOrWhiteSpace(request.Prompt))
        {
            throw Invalid("prompt or messages is required");
        }
        if (request.InputLength > options.MaxPromptLength)
            throw Invalid($"prompt is {request.InputLength} characters; the most is {options.MaxPromptLength}");
        if (request.MaxTokens < 0) throw Invalid($"max_tokens must not be negative; it is {request.MaxTokens}");
        // Unset stays unset here: it means the model's own limit, which only the processor knows (ForwardedMaxTokens).
        if (request.MaxTokens > options.MaxTokensCap) request.MaxTokens = options.MaxTokensCap;
        if (!double.IsFinite(request.Temperature) || request.Temperature is < 0 or > MaxTemperature)
            throw Invalid($"temperature must be between 0 and {MaxTemperature}; it is {request.Temperature}");
        if (request.TopP is { } topP && (!double.IsFinite(topP) || topP is <= 0 or > 1))
            throw Invalid($"top_p must be greater than 0 and at most 1; it is {topP}");
        if (request.Stop.Count > MaxStopSequences) throw Invalid($"at most {MaxStopSequences} stop sequences; there are {request.Stop.Count}");
        foreach (var stop in request.Stop)
            if (stop.Length is 0 or > MaxStopSequenceLength)
                throw Invalid($"each stop sequence must be 1 to {MaxStopSequenceLength} characters");
    }

    private static RpcException Invalid(string why) => new(RpcStatusCode.InvalidArgument, why);
}
