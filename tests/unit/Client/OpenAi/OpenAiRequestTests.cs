using System.Text.Json;
using P2PInference.Workers.Client.OpenAi;

namespace P2PInference.Tests.Unit.Client.OpenAi;

/// <summary>OpenAI request bodies as `client serve` reads them into the network's request; what it cannot honour is a 400 naming the member.</summary>
[TestFixture]
public sealed class OpenAiRequestTests
{
    [Test]
    public void Chat_MapsMessagesAndEveryOption()
    {
        var request = Chat("""
            {"model":"builtin-small","messages":[
               {"role":"developer","content":"Be brief."},
               {"role":"user","content":[{"type":"text","text":"Hello "},{"type":"text","text":"there"}]},
               {"role":"assistant","content":null},
               {"role":"user","content":"again"}],
             "temperature":0.2,"top_p":0.9,"max_completion_tokens":12,"stop":["\n","END"],"seed":7,
             "stream":true,"stream_options":{"include_usage":true},"user":"ignored","n":1}
            """);

        Assert.Multiple(() =>
        {
            Assert.That(request.Inference.Model, Is.EqualTo("builtin-small"));
            Assert.That(request.Inference.Messages.Select(m => (m.Role, m.Content)),
                Is.EqualTo(new[] { ("system", "Be brief."), ("user", "Hello there"), ("assistant", ""), ("user", "again") }));
            Assert.That(request.Inference.Prompt, Is.Empty);
            Assert.That(request.Inference.Temperature, Is.EqualTo(0.2));
            Assert.That(request.Inference.TopP, Is.EqualTo(0.9));
            Assert.That(request.Inference.MaxTokens, Is.EqualTo(12));
            Assert.That(request.Inference.Stop, Is.EqualTo(new[] { "\n", "END" }));
            Assert.That(request.Inference.Seed, Is.EqualTo(7));
            Assert.That(request.Stream, Is.True);
            Assert.That(request.IncludeUsage, Is.True);
        });
    }

    [Test]
    public void Chat_WithOnlyTheRequiredMembers_TakesOpenAisDefaults()
    {
        var request = Chat("""{"messages":[{"role":"user","content":"hi"}],"stop":"x","max_tokens":5}""");

        Assert.Multiple(() =>
        {
            Assert.That(request.Inference.Model, Is.Empty, "no model: the gateway's default");
            Assert.That(request.Inference.Temperature, Is.EqualTo(1.0));
            Assert.That(request.Inference.TopP, Is.Null);
            Assert.That(request.Inference.Seed, Is.Null);
            Assert.That(request.Inference.Stop, Is.EqualTo(new[] { "x" }));
            Assert.That(request.Inference.MaxTokens, Is.EqualTo(5));
            Assert.That(request.Stream, Is.False);
        });
    }

    [Test]
    public void Completion_TakesAPromptOrAnArrayOfOnePrompt()
    {
        Assert.That(OpenAiRequest.ParseCompletion(Json("""{"prompt":"The network"}""")).Inference.Prompt, Is.EqualTo("The network"));
        Assert.That(OpenAiRequest.ParseCompletion(Json("""{"prompt":["The network"]}""")).Inference.IsChat, Is.False);
    }

    [TestCase("""{"model":"m"}""", "messages")]
    [TestCase("""{"messages":[]}""", "messages")]
    [TestCase("""{"messages":"hi"}""", "messages")]
    [TestCase("""{"messages":[{"role":"tool","content":"x"}]}""", "messages[0].role")]
    [TestCase("""{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", "messages[0].content")]
    [TestCase("""{"messages":[{"role":"user","content":"x"}],"n":2}""", "n")]
    [TestCase("""{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}""", "temperature")]
    [TestCase("""{"messages":[{"role":"user","content":"x"}],"max_tokens":1.5}""", "max_tokens")]
    [TestCase("""{"messages":[{"role":"user","content":"x"}],"max_tokens":-1}""", "max_tokens")]
    [TestCase("""{"messages":[{"role":"user","content":"x"}],"stop":[1]}""", "stop")]
    [TestCase("""{"messages":[{"role":"user","content":"x"}],"seed":99999999999}""", "seed")]
    [TestCase("""{"messages":[{"role":"user","content":"x"}],"stream":"yes"}""", "stream")]
    [TestCase("""{"messages":[{"role":"user","content":"x"}],"model":3}""", "model")]
    public void Chat_Refuses_WhatItCannotHonour_NamingTheMember(string body, string param)
    {
        var error = Assert.Throws<OpenAiError>(() => Chat(body))!;

        Assert.Multiple(() =>
        {
            Assert.That(error.Status, Is.EqualTo(400));
            Assert.That(error.Type, Is.EqualTo("invalid_request_error"));
            Assert.That(error.Param, Is.EqualTo(param));
        });
    }

    [TestCase("""[]""")]
    [TestCase("""{"prompt":42}""")]
    [TestCase("""{"prompt":["a","b"]}""")]
    [TestCase("""{"prompt":"   "}""")]
    public void Completion_Refuses_ABodyWithoutAUsablePrompt(string body) =>
        Assert.That(() => OpenAiRequest.ParseCompletion(Json(body)), Throws.TypeOf<OpenAiError>().With.Property(nameof(OpenAiError.Status)).EqualTo(400));

    [Test]
    public void RandomAndTruncatedBodies_AreEitherReadOrRefusedWith400_NeverAnotherFailure()
    {
        var random = new Random(1234);
        var valid = System.Text.Encoding.UTF8.GetBytes("""{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":["a"],"max_tokens":3,"top_p":0.5}""");
        var bodies = new List<byte[]>();
        for (var cut = 0; cut < valid.Length; cut++) bodies.Add(valid[..cut]);
        for (var i = 0; i < 300; i++)
        {
            var mutated = (byte[])valid.Clone();
            mutated[random.Next(mutated.Length)] = (byte)random.Next(256);
            bodies.Add(mutated);
            var noise = new byte[random.Next(1, 64)];
            random.NextBytes(noise);
            bodies.Add(noise);
        }

        foreach (var body in bodies)
        {
            try
            {
                using var document = JsonDocument.Parse(body);
                OpenAiRequest.ParseChat(document.RootElement);
            }
            catch (JsonException)
            {
                // The endpoint answers these with 400 before reading members.
            }
            catch (OpenAiError e)
            {
                Assert.That(e.Status, Is.EqualTo(400), Convert.ToHexString(body));
            }
        }
    }

    private static OpenAiRequest Chat(string json) => OpenAiRequest.ParseChat(Json(json));

    private static JsonElement Json(string json)
    {
        using var document = JsonDocument.Parse(json);
        return document.RootElement.Clone();
    }
}
