using System.Text;
using System.Text.Json;
using P2PInference.TestKit;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Tests.Unit.Engines;

public sealed class OpenAiMessageTests
{
    [Test]
    public void ChatRequest_CarriesTheRequest_InOpenAiShape()
    {
        var request = new InferenceRequest
        {
            Model = "llama3",
            Messages = [new ChatMessage("system", "Be brief."), new ChatMessage("user", "Hi \"there\"")],
            MaxTokens = 12,
            Temperature = 0.5,
            Seed = 42,
            Stop = ["\n\n"],
        };

        using var json = JsonDocument.Parse(OpenAiCompatibleEngine.WriteChatRequest(request));
        var root = json.RootElement;

        Assert.That(root.GetProperty("model").GetString(), Is.EqualTo("llama3"));
        Assert.That(root.GetProperty("stream").GetBoolean(), Is.True);
        Assert.That(root.GetProperty("max_tokens").GetInt32(), Is.EqualTo(12));
        Assert.That(root.GetProperty("temperature").GetDouble(), Is.EqualTo(0.5));
        Assert.That(root.GetProperty("seed").GetInt32(), Is.EqualTo(42));
        Assert.That(root.GetProperty("stop")[0].GetString(), Is.EqualTo("\n\n"));
        Assert.That(root.GetProperty("messages")[1].GetProperty("content").GetString(), Is.EqualTo("Hi \"there\""));
        Assert.That(root.GetProperty("messages")[0].GetProperty("role").GetString(), Is.EqualTo("system"));
    }

    [Test]
    public void ChatRequest_SendsAPromptAsOneUserMessage_AndOmitsUnsetFields()
    {
        var request = new InferenceRequest { Model = "m", Prompt = "Hello" };

        using var json = JsonDocument.Parse(OpenAiCompatibleEngine.WriteChatRequest(request));

        Assert.That(json.RootElement.GetProperty("messages").GetArrayLength(), Is.EqualTo(1));
        Assert.That(json.RootElement.GetProperty("messages")[0].GetProperty("role").GetString(), Is.EqualTo("user"));
        Assert.That(json.RootElement.TryGetProperty("seed", out _), Is.False);
        Assert.That(json.RootElement.TryGetProperty("stop", out _), Is.False);
    }

    [TestCase("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}", "Hi", null)]
    [TestCase("{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}", null, null)]
    [TestCase("{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}", null, FinishReason.Length)]
    [TestCase("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\".\"},\"finish_reason\":\"stop\"}]}", ".", FinishReason.Stop)]
    [TestCase("{\"choices\":[],\"usage\":{\"total_tokens\":3}}", null, null)]
    [TestCase("{\"choices\":[{\"text\":\"old\",\"finish_reason\":null}]}", "old", null)]
    public void Chunk_YieldsItsContentAndFinishReason(string data, string? content, FinishReason? finish)
    {
        Assert.That(OpenAiCompatibleEngine.ParseChunk(data), Is.EqualTo((content, finish)));
    }

    [TestCase("not json")]
    [TestCase("{\"choices\":")]
    [TestCase("[1,2]")]
    [TestCase("{\"choices\":\"nope\"}")]
    [TestCase("{\"choices\":[7]}")]
    [TestCase("{\"choices\":[{\"delta\":{\"content\":5}}]}")]
    [TestCase("{\"choices\":[{\"delta\":{},\"finish_reason\":{}}]}")]
    public void Chunk_ThrowsMalformedResponse_ForBadJson(string data)
    {
        var error = Assert.Throws<InferenceException>(() => OpenAiCompatibleEngine.ParseChunk(data));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.MalformedResponse));
    }

    [Test]
    public void Chunk_ThrowsEngineError_WhenTheServerReportsAnErrorMidStream()
    {
        var error = Assert.Throws<InferenceException>(() => OpenAiCompatibleEngine.ParseChunk("{\"error\":{\"message\":\"out of memory\"}}"));

        Assert.That(error!.Kind, Is.EqualTo(InferenceErrorKind.EngineError));
        Assert.That(error.Message, Does.Contain("out of memory"));
    }

    [Test]
    public void Completion_GivesOneFinalToken()
    {
        var body = System.Text.Encoding.UTF8.GetBytes("{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello there.\"},\"finish_reason\":\"length\"}]}");

        Assert.That(OpenAiCompatibleEngine.ParseCompletion(body), Is.EqualTo(new GeneratedToken(0, "Hello there.", FinishReason.Length)));
    }

    [Test]
    public void Chunk_ThrowsOnlyTypedErrors_ForRandomText()
    {
        var random = TestSeed.CreateRandom();
        const string alphabet = "{}[]\":,choicesdeltacontentfinish_reason0123 nulltrue";
        for (var round = 0; round < 500; round++)
        {
            var chars = new char[random.Next(0, 120)];
            for (var i = 0; i < chars.Length; i++) chars[i] = alphabet[random.Next(alphabet.Length)];
            try
            {
                OpenAiCompatibleEngine.ParseChunk(new string(chars));
            }
            catch (InferenceException e)
            {
                Assert.That(e.Kind, Is.AnyOf(InferenceErrorKind.MalformedResponse, InferenceErrorKind.EngineError));
            }
        }
    }
}
