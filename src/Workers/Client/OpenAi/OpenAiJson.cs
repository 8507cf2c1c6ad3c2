using System.Buffers;
using System.Text.Json;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Workers.Client.OpenAi;

/// <summary>
/// The JSON bodies of OpenAI's API that <c>client serve</c> answers with: completions and their
/// streamed chunks (chat and text), the model list and errors. Each method writes one JSON value.
/// </summary>
internal static class OpenAiJson
{
    public const string ChatCompletion = "chat.completion";
    public const string ChatCompletionChunk = "chat.completion.chunk";
    public const string TextCompletion = "text_completion";

    /// <summary>The owner every model is listed with.</summary>
    public const string Owner = "p2pinference";

    public static byte[] Error(OpenAiError error) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteStartObject("error");
        w.WriteString("message", error.Message);
        w.WriteString("type", error.Type);
        w.WriteString("code", error.Code);
        if (error.Param is null) w.WriteNull("param");
        else w.WriteString("param", error.Param);
        w.WriteEndObject();
        w.WriteEndObject();
    });

    public static byte[] Models(IReadOnlyList<ModelInfo> models, long created) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteString("object", "list");
        w.WriteStartArray("data");
        foreach (var model in models)
        {
            w.WriteStartObject();
            w.WriteString("id", model.Name);
            w.WriteString("object", "model");
            w.WriteNumber("created", created);
            w.WriteString("owned_by", Owner);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    });

    /// <summary>A whole completion: <paramref name="chat"/> gives a chat.completion, else a text_completion.</summary>
    public static byte[] Completion(bool chat, InferResponse response, long created) => Write(w =>
    {
        Header(w, chat ? ChatCompletion : TextCompletion, IdOf(chat, response.RequestId), response.Model, created);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        if (chat)
        {
            w.WriteStartObject("message");
            w.WriteString("role", InferMessageRoles.Assistant);
            w.WriteString("content", response.Text);
            w.WriteEndObject();
        }
        else
        {
            w.WriteString("text", response.Text);
            w.WriteNull("logprobs");
        }
        WriteFinishReason(w, response.FinishReason);
        w.WriteEndObject();
        w.WriteEndArray();
        Usage(w, response.PromptTokens, response.CompletionTokens != 0 ? response.CompletionTokens : response.Tokens);
        w.WriteEndObject();
    });

    /// <summary>One streamed chunk; <paramref name="first"/> names the assistant role in a chat's delta, as OpenAI's first chunk does.</summary>
    public static byte[] Chunk(bool chat, InferChunk chunk, string model, long created, bool first) => Write(w =>
    {
        Header(w, chat ? ChatCompletionChunk : TextCompletion, IdOf(chat, chunk.RequestId), model, created);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        if (chat)
        {
            w.WriteStartObject("delta");
            if (first) w.WriteString("role", InferMessageRoles.Assistant);
            if (chunk.Text.Length > 0 || first) w.WriteString("content", chunk.Text);
            w.WriteEndObject();
        }
        else
        {
            w.WriteString("text", chunk.Text);
            w.WriteNull("logprobs");
        }
        WriteFinishReason(w, chunk.FinishReason);
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
    });

    /// <summary>The extra last chunk of <c>stream_options.include_usage</c>: no choices, the usage.</summary>
    public static byte[] UsageChunk(bool chat, InferChunk last, string model, long created) => Write(w =>
    {
        Header(w, chat ? ChatCompletionChunk : TextCompletion, IdOf(chat, last.RequestId), model, created);
        w.WriteStartArray("choices");
        w.WriteEndArray();
        Usage(w, last.PromptTokens, last.CompletionTokens);
        w.WriteEndObject();
    });

    /// <summary>OpenAI's finish reasons are stop and length; the network's others have no counterpart and pass as they are.</summary>
    private static void WriteFinishReason(Utf8JsonWriter w, string reason)
    {
        if (reason.Length == 0) w.WriteNull("finish_reason");
        else w.WriteString("finish_reason", reason);
    }

    private static string IdOf(bool chat, string requestId) => (chat ? "chatcmpl-" : "cmpl-") + requestId;

    private static void Header(Utf8JsonWriter w, string type, string id, string model, long created)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("object", type);
        w.WriteNumber("created", created);
        w.WriteString("model", model);
    }

    private static void Usage(Utf8JsonWriter w, int prompt, int completion)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", prompt);
        w.WriteNumber("completion_tokens", completion);
        w.WriteNumber("total_tokens", (long)prompt + completion);
        w.WriteEndObject();
    }

    private static byte[] Write(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            write(writer);
        }
        return buffer.WrittenSpan.ToArray();
    }
}
