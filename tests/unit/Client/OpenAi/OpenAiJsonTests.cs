using System.Text.Json.Nodes;
using P2PInference.Facilities.Rpc;
using P2PInference.Workers.Client.OpenAi;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Tests.Unit.Client.OpenAi;

/// <summary>The JSON `client serve` answers with has the shapes OpenAI's clients read.</summary>
[TestFixture]
public sealed class OpenAiJsonTests
{
    [Test]
    public void ChatCompletion_HasTheMessageFinishReasonAndUsage()
    {
        var response = new InferResponse
        {
            RequestId = "r-1", Model = "builtin-small", Text = "Hello.", Tokens = 2, FinishReason = "length", PromptTokens = 5, CompletionTokens = 2,
        };

        var json = Parse(OpenAiJson.Completion(chat: true, response, created: 1700000000));

        Assert.Multiple(() =>
        {
            Assert.That((string?)json["id"], Is.EqualTo("chatcmpl-r-1"));
            Assert.That((string?)json["object"], Is.EqualTo("chat.completion"));
            Assert.That((long?)json["created"], Is.EqualTo(1700000000));
            Assert.That((string?)json["model"], Is.EqualTo("builtin-small"));
            Assert.That((string?)json["choices"]![0]!["message"]!["role"], Is.EqualTo("assistant"));
            Assert.That((string?)json["choices"]![0]!["message"]!["content"], Is.EqualTo("Hello."));
            Assert.That((string?)json["choices"]![0]!["finish_reason"], Is.EqualTo("length"));
            Assert.That((int?)json["usage"]!["prompt_tokens"], Is.EqualTo(5));
            Assert.That((int?)json["usage"]!["completion_tokens"], Is.EqualTo(2));
            Assert.That((int?)json["usage"]!["total_tokens"], Is.EqualTo(7));
        });
    }

    [Test]
    public void TextCompletion_HasTheTextAndAnOlderProcessorsTokenCount()
    {
        var json = Parse(OpenAiJson.Completion(chat: false, new InferResponse { RequestId = "r", Model = "m", Text = " more", Tokens = 1, FinishReason = "stop" }, 1));

        Assert.Multiple(() =>
        {
            Assert.That((string?)json["object"], Is.EqualTo("text_completion"));
            Assert.That((string?)json["id"], Is.EqualTo("cmpl-r"));
            Assert.That((string?)json["choices"]![0]!["text"], Is.EqualTo(" more"));
            Assert.That((int?)json["usage"]!["completion_tokens"], Is.EqualTo(1), "a processor that sent no usage: its token count");
        });
    }

    [Test]
    public void StreamedChatChunks_NameTheRoleFirst_ThenCarryContent_AndFinishOnlyAtTheEnd()
    {
        var first = Parse(OpenAiJson.Chunk(true, new InferChunk { RequestId = "r", Text = "The" }, "m", 1, first: true));
        var middle = Parse(OpenAiJson.Chunk(true, new InferChunk { RequestId = "r", Text = " net" }, "m", 1, first: false));
        var last = Parse(OpenAiJson.Chunk(true, new InferChunk { RequestId = "r", FinishReason = "stop", PromptTokens = 2, CompletionTokens = 3 }, "m", 1, first: false));
        var usage = Parse(OpenAiJson.UsageChunk(true, new InferChunk { RequestId = "r", PromptTokens = 2, CompletionTokens = 3 }, "m", 1));

        Assert.Multiple(() =>
        {
            Assert.That((string?)first["object"], Is.EqualTo("chat.completion.chunk"));
            Assert.That((string?)first["choices"]![0]!["delta"]!["role"], Is.EqualTo("assistant"));
            Assert.That((string?)first["choices"]![0]!["delta"]!["content"], Is.EqualTo("The"));
            Assert.That(first["choices"]![0]!["finish_reason"], Is.Null);
            Assert.That(middle["choices"]![0]!["delta"]!["role"], Is.Null);
            Assert.That((string?)middle["choices"]![0]!["delta"]!["content"], Is.EqualTo(" net"));
            Assert.That(last["choices"]![0]!["delta"]!.AsObject(), Is.Empty, "the finishing chunk's delta is empty");
            Assert.That((string?)last["choices"]![0]!["finish_reason"], Is.EqualTo("stop"));
            Assert.That(usage["choices"]!.AsArray(), Is.Empty);
            Assert.That((int?)usage["usage"]!["total_tokens"], Is.EqualTo(5));
        });
    }

    [Test]
    public void Models_AreAListOfModelObjects()
    {
        var json = Parse(OpenAiJson.Models([new ModelInfo { Name = "builtin-small" }, new ModelInfo { Name = "builtin-large" }], 5));

        Assert.That((string?)json["object"], Is.EqualTo("list"));
        Assert.That(json["data"]!.AsArray().Select(m => ((string?)m!["id"], (string?)m["object"], (string?)m["owned_by"])),
            Is.EqualTo(new[] { ("builtin-small", "model", "p2pinference"), ("builtin-large", "model", "p2pinference") }));
    }

    [TestCase(RpcStatusCode.InvalidArgument, 400, "invalid_request_error")]
    [TestCase(RpcStatusCode.NotFound, 404, "invalid_request_error")]
    [TestCase(RpcStatusCode.Unauthenticated, 401, "authentication_error")]
    [TestCase(RpcStatusCode.PermissionDenied, 403, "permission_error")]
    [TestCase(RpcStatusCode.ResourceExhausted, 429, "rate_limit_error")]
    [TestCase(RpcStatusCode.Unavailable, 503, "server_error")]
    [TestCase(RpcStatusCode.DeadlineExceeded, 504, "server_error")]
    [TestCase(RpcStatusCode.Internal, 500, "server_error")]
    public void NetworkErrors_BecomeOpenAiErrors_WithTheirStatusAndType(RpcStatusCode code, int status, string type)
    {
        var error = OpenAiError.From(new RpcException(code, "why"));
        var json = Parse(OpenAiJson.Error(error));

        Assert.Multiple(() =>
        {
            Assert.That(error.Status, Is.EqualTo(status));
            Assert.That((string?)json["error"]!["type"], Is.EqualTo(type));
            Assert.That((string?)json["error"]!["message"], Is.EqualTo("why"));
            Assert.That((string?)json["error"]!["code"], Is.Not.Empty);
        });
    }

    [Test]
    public void RateLimit_CarriesRetryAfter_InWholeSecondsRoundedUp_AlsoWhenWrapped()
    {
        var inner = RpcException.WithRetryAfter(RpcStatusCode.ResourceExhausted, "slow down", TimeSpan.FromMilliseconds(1500));
        var wrapped = new RpcException(RpcStatusCode.ResourceExhausted, "topic call failed", innerException: inner);

        Assert.That(OpenAiError.From(inner).RetryAfterHeader, Is.EqualTo("2"));
        Assert.That(OpenAiError.From(wrapped).RetryAfterHeader, Is.EqualTo("2"));
        Assert.That(OpenAiError.From(new RpcException(RpcStatusCode.ResourceExhausted, "no hint")).RetryAfterHeader, Is.Null);
    }

    private static JsonNode Parse(byte[] json) => JsonNode.Parse(json)!;
}
