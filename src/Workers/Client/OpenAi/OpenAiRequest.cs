using System.Text.Json;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Workers.Client.OpenAi;

/// <summary>
/// A <c>/v1/chat/completions</c> or <c>/v1/completions</c> body, read into the network's
/// <see cref="InferRequest"/>. Members this endpoint does not use are ignored, as OpenAI-compatible
/// servers do; members it cannot honour (<c>n</c> above 1, tools, images) are refused with 400.
/// </summary>
internal sealed record OpenAiRequest(InferRequest Inference, bool Stream, bool IncludeUsage)
{
    /// <summary>The largest body read; a chat past it is refused before parsing.</summary>
    public const int MaxBodyBytes = 4 * 1024 * 1024;

    /// <summary>OpenAI's default temperature, for a request that names none.</summary>
    public const double DefaultTemperature = 1.0;

    /// <exception cref="OpenAiError">400 naming the member that is wrong.</exception>
    public static OpenAiRequest ParseChat(JsonElement body) => Checked(() => ReadChat(body));

    /// <exception cref="OpenAiError">400 naming the member that is wrong.</exception>
    public static OpenAiRequest ParseCompletion(JsonElement body) => Checked(() => ReadCompletion(body));

    /// <summary>JsonDocument checks a string's UTF-8 only when it is read; a bad one is the caller's mistake, so a 400.</summary>
    private static OpenAiRequest Checked(Func<OpenAiRequest> read)
    {
        try
        {
            return read();
        }
        catch (InvalidOperationException)
        {
            throw OpenAiError.BadRequest("the body holds a string that is not valid UTF-8");
        }
    }

    private static OpenAiRequest ReadChat(JsonElement body)
    {
        var request = Common(body);
        if (!body.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array)
            throw OpenAiError.BadRequest("'messages' is required and must be an array", "messages");
        var i = 0;
        foreach (var message in messages.EnumerateArray())
        {
            var param = $"messages[{i++}]";
            if (message.ValueKind != JsonValueKind.Object) throw OpenAiError.BadRequest($"{param} must be an object", param);
            var role = message.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString()! : "";
            // OpenAI's newer name for the system role.
            if (role == "developer") role = InferMessageRoles.System;
            if (!InferMessageRoles.IsKnown(role))
                throw OpenAiError.BadRequest($"{param}.role must be system, developer, user or assistant; tools are not supported", param + ".role");
            request.Inference.Messages.Add(new InferMessage { Role = role, Content = ContentOf(message, param) });
        }
        if (request.Inference.Messages.Count == 0) throw OpenAiError.BadRequest("'messages' is empty", "messages");
        return request;
    }

    private static OpenAiRequest ReadCompletion(JsonElement body)
    {
        var request = Common(body);
        if (!body.TryGetProperty("prompt", out var prompt)) throw OpenAiError.BadRequest("'prompt' is required", "prompt");
        request.Inference.Prompt = prompt.ValueKind switch
        {
            JsonValueKind.String => prompt.GetString()!,
            JsonValueKind.Array when prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String => prompt[0].GetString()!,
            _ => throw OpenAiError.BadRequest("'prompt' must be a string (or an array of one string)", "prompt"),
        };
        if (string.IsNullOrWhiteSpace(request.Inference.Prompt)) throw OpenAiError.BadRequest("'prompt' is empty", "prompt");
        return request;
    }

    private static OpenAiRequest Common(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object) throw OpenAiError.BadRequest("the body must be a JSON object");
        var inference = new InferRequest
        {
            Model = String(body, "model") ?? string.Empty,
            Temperature = Number(body, "temperature") ?? DefaultTemperature,
            TopP = Number(body, "top_p"),
            MaxTokens = (int)(Integer(body, "max_completion_tokens") ?? Integer(body, "max_tokens") ?? 0),
            Seed = Integer(body, "seed"),
        };
        if (inference.MaxTokens < 0) throw OpenAiError.BadRequest("max_tokens must not be negative", "max_tokens");
        if (Integer(body, "n") is { } n && n != 1) throw OpenAiError.BadRequest("only n = 1 is supported", "n");
        if (body.TryGetProperty("stop", out var stop))
        {
            switch (stop.ValueKind)
            {
                case JsonValueKind.Null:
                    break;
                case JsonValueKind.String:
                    inference.Stop.Add(stop.GetString()!);
                    break;
                case JsonValueKind.Array:
                    foreach (var s in stop.EnumerateArray())
                        inference.Stop.Add(s.ValueKind == JsonValueKind.String ? s.GetString()! : throw OpenAiError.BadRequest("'stop' must hold strings", "stop"));
                    break;
                default:
                    throw OpenAiError.BadRequest("'stop' must be a string or an array of strings", "stop");
            }
        }
        var stream = Boolean(body, "stream") ?? false;
        var includeUsage = body.TryGetProperty("stream_options", out var options) && options.ValueKind == JsonValueKind.Object
            && (Boolean(options, "include_usage") ?? false);
        return new OpenAiRequest(inference, stream, includeUsage);
    }

    /// <summary>A message's text: a string, or the text parts of an array of parts; null is empty (an assistant turn that only called tools).</summary>
    private static string ContentOf(JsonElement message, string param)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null) return string.Empty;
        if (content.ValueKind == JsonValueKind.String) return content.GetString()!;
        if (content.ValueKind != JsonValueKind.Array) throw OpenAiError.BadRequest($"{param}.content must be a string or an array of parts", param + ".content");
        var text = new System.Text.StringBuilder();
        foreach (var part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || String(part, "type") != "text" || String(part, "text") is not { } piece)
                throw OpenAiError.BadRequest($"{param}.content: only text parts are supported", param + ".content");
            text.Append(piece);
        }
        return text.ToString();
    }

    private static string? String(JsonElement body, string name) =>
        !body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null ? null
        : value.ValueKind == JsonValueKind.String ? value.GetString()
        : throw OpenAiError.BadRequest($"'{name}' must be a string", name);

    private static double? Number(JsonElement body, string name) =>
        !body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null ? null
        : value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out var number) ? number
        : throw OpenAiError.BadRequest($"'{name}' must be a number", name);

    private static long? Integer(JsonElement body, string name) =>
        !body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null ? null
        : value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var number) && number is >= int.MinValue and <= int.MaxValue ? number
        : throw OpenAiError.BadRequest($"'{name}' must be an integer that fits in 32 bits", name);

    private static bool? Boolean(JsonElement body, string name) =>
        !body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null ? null
        : value.ValueKind is JsonValueKind.True or JsonValueKind.False ? value.GetBoolean()
        : throw OpenAiError.BadRequest($"'{name}' must be true or false", name);
}
