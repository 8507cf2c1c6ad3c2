using System.Buffers;
using MessagePack;
using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Rpc.Wire;
using P2PInference.Workers.Contracts.Auth;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Tests.Unit.Contracts;

/// <summary>
/// Messages written by other versions of a contract still decode: an older peer leaves out the
/// members added since (they arrive empty), a newer one sends members we do not know (skipped).
/// </summary>
[TestFixture]
public sealed class ContractCompatibilityTests
{
    /// <summary>
    /// An InferRequest as the first contract version wrote it, before seed and stop existed:
    /// [request_id, model, prompt, max_tokens, temperature]. Frozen bytes, not re-encoded by this build.
    /// </summary>
    private static readonly byte[] InferRequestVersion1 = Convert.FromHexString("95A3722D31A46563686FA268692ACB3FE0000000000000");

    [Test]
    public void InferRequest_FromTheFirstVersion_Decodes_WithTheNewerMembersEmpty()
    {
        var request = InferRequest.Parser.Decode(InferRequestVersion1);

        Assert.Multiple(() =>
        {
            Assert.That(request.RequestId, Is.EqualTo("r-1"));
            Assert.That(request.Model, Is.EqualTo("echo"));
            Assert.That(request.Prompt, Is.EqualTo("hi"));
            Assert.That(request.MaxTokens, Is.EqualTo(42));
            Assert.That(request.Temperature, Is.EqualTo(0.5));
            Assert.That(request.Seed, Is.Null);
            Assert.That(request.Stop, Is.Empty);
        });
    }

    /// <summary>
    /// An InferRequest of the second version, before chat messages and top_p: the first version's
    /// members plus seed 9 and stop ["\n"]. Frozen bytes, not re-encoded by this build.
    /// </summary>
    private static readonly byte[] InferRequestVersion2 = Convert.FromHexString("97A3722D31A46563686FA268692ACB3FE00000000000000991A10A");

    /// <summary>An InferResponse of the version before usage and timing: [request_id, model, text, tokens, finish_reason, processor].</summary>
    private static readonly byte[] InferResponseVersion1 = Convert.FromHexString("96A3722D31A46563686FA26869" + "02A473746F70A27031");

    [Test]
    public void InferRequest_FromTheVersionBeforeChat_Decodes_AsASinglePromptWithDefaults()
    {
        var request = InferRequest.Parser.Decode(InferRequestVersion2);

        Assert.Multiple(() =>
        {
            Assert.That(request.Prompt, Is.EqualTo("hi"));
            Assert.That(request.Seed, Is.EqualTo(9));
            Assert.That(request.Stop, Is.EqualTo(new[] { "\n" }));
            Assert.That(request.Messages, Is.Empty);
            Assert.That(request.IsChat, Is.False);
            Assert.That(request.TopP, Is.Null, "unset top_p: the model's default");
        });
    }

    [Test]
    public void InferResponse_FromTheVersionBeforeUsage_Decodes_WithZeroUsageAndTiming()
    {
        var response = InferResponse.Parser.Decode(InferResponseVersion1);

        Assert.Multiple(() =>
        {
            Assert.That(response.Text, Is.EqualTo("hi"));
            Assert.That(response.Tokens, Is.EqualTo(2));
            Assert.That(response.FinishReason, Is.EqualTo(FinishReasons.Stop));
            Assert.That(response.Processor, Is.EqualTo("p1"));
            Assert.That(response.PromptTokens, Is.Zero);
            Assert.That(response.CompletionTokens, Is.Zero);
            Assert.That(response.GenerationMs, Is.Zero);
        });
    }

    [Test]
    public void ChatRequest_RoundTrips_AndAnOlderReaderSeesItsOwnMembersInPlace()
    {
        var chat = new InferRequest
        {
            RequestId = "r-1", Model = "echo", MaxTokens = 42, Temperature = 0.5, TopP = 0.9,
            Messages = { new InferMessage { Role = InferMessageRoles.System, Content = "Be brief." }, new InferMessage { Role = InferMessageRoles.User, Content = "hi" } },
        };

        var decoded = InferRequest.Parser.Decode(chat.ToByteArray());

        Assert.Multiple(() =>
        {
            Assert.That(decoded.Messages.Select(m => (m.Role, m.Content)), Is.EqualTo(new[] { ("system", "Be brief."), ("user", "hi") }));
            Assert.That(decoded.TopP, Is.EqualTo(0.9));
            Assert.That(decoded.IsChat, Is.True);
            Assert.That(decoded.InputLength, Is.EqualTo("Be brief.".Length + 2));
        });
    }

    [Test]
    public void InferRequest_FromANewerVersion_WithUnknownMembers_Decodes()
    {
        var bytes = Write(w =>
        {
            w.WriteArrayHeader(12);
            w.Write("r-2");
            w.Write("echo");
            w.Write("hello");
            w.Write(7);
            w.Write(0.25);
            w.Write(9L);
            w.WriteArrayHeader(1);
            w.Write("\n");
            w.WriteArrayHeader(0);
            w.WriteNil();
            // Three members of a later version: a number, a map and a nested array.
            w.Write(123);
            w.WriteMapHeader(1);
            w.Write("k");
            w.Write("v");
            w.WriteArrayHeader(2);
            w.WriteNil();
            w.Write(true);
        });

        var request = InferRequest.Parser.Decode(bytes);

        Assert.Multiple(() =>
        {
            Assert.That(request.RequestId, Is.EqualTo("r-2"));
            Assert.That(request.Prompt, Is.EqualTo("hello"));
            Assert.That(request.MaxTokens, Is.EqualTo(7));
            Assert.That(request.Seed, Is.EqualTo(9));
            Assert.That(request.Stop, Is.EqualTo(new[] { "\n" }));
        });
    }

    [Test]
    public void ThisVersion_ReadsItsOwnMessages_AndTheFirstVersionsLayoutIsAPrefixOfIt()
    {
        var current = new InferRequest { RequestId = "r-1", Model = "echo", Prompt = "hi", MaxTokens = 42, Temperature = 0.5 }.ToByteArray();

        // Keys are positions: the members the first version knew sit where it put them.
        Assert.That(current.AsSpan(1).StartsWith(InferRequestVersion1.AsSpan(1)), Is.True, Convert.ToHexString(current));
        Assert.That(InferRequest.Parser.Decode(current).Prompt, Is.EqualTo("hi"));
    }

    [Test]
    public void NilForMembersThatCannotBeNull_ArrivesAsTheEmptyValue()
    {
        var bytes = Write(w =>
        {
            w.WriteArrayHeader(7);
            for (var i = 0; i < 3; i++) w.WriteNil();
            w.Write(1);
            w.Write(0.0);
            w.WriteNil();
            w.WriteNil();
        });

        var request = InferRequest.Parser.Decode(bytes);

        Assert.Multiple(() =>
        {
            Assert.That(request.RequestId, Is.Empty);
            Assert.That(request.Model, Is.Empty);
            Assert.That(request.Stop, Is.Empty);
            Assert.That(request.Seed, Is.Null);
        });
        Assert.That(ApiKeyRecord.Parser.Decode(Write(w =>
        {
            w.WriteArrayHeader(5);
            for (var i = 0; i < 5; i++) w.WriteNil();
        })).KeyHash, Is.Empty);
        Assert.That(MessagePackRpcCodecOf<RequestEnvelope>().Decode(Write(w => w.WriteArrayHeader(0))).Metadata, Is.Empty);
    }

    [Test]
    public void NilInsideAList_IsMalformed()
    {
        var bytes = Write(w =>
        {
            w.WriteArrayHeader(1);
            w.WriteArrayHeader(2);
            w.WriteArrayHeader(0);
            w.WriteNil();
        });

        Assert.That(() => ModelsResponse.Parser.Decode(bytes), Throws.InstanceOf<MalformedMessageException>());
    }

    [Test]
    public void ValidateRequest_KeepsTheOneofBehaviour_OnTheWire()
    {
        var byKey = ValidateRequest.Parser.Decode(new ValidateRequest { ApiKey = "k" }.ToByteArray());
        var byToken = ValidateRequest.Parser.Decode(new ValidateRequest { Token = "t" }.ToByteArray());
        var neither = ValidateRequest.Parser.Decode(new ValidateRequest().ToByteArray());

        Assert.Multiple(() =>
        {
            Assert.That(byKey.CredentialCase, Is.EqualTo(ValidateRequest.CredentialOneofCase.ApiKey));
            Assert.That(byKey.ApiKey, Is.EqualTo("k"));
            Assert.That(byToken.CredentialCase, Is.EqualTo(ValidateRequest.CredentialOneofCase.Token));
            Assert.That(neither.CredentialCase, Is.EqualTo(ValidateRequest.CredentialOneofCase.None));
            Assert.That(new ValidateRequest { ApiKey = "k", Token = "t" }.CredentialCase, Is.EqualTo(ValidateRequest.CredentialOneofCase.Token));
        });
    }

    private static P2PInference.Facilities.Rpc.MessagePackRpcCodec<T> MessagePackRpcCodecOf<T>()
        where T : class => P2PInference.Facilities.Rpc.MessagePackRpcCodec<T>.Instance;

    private static byte[] Write(Action<MessagePackWriterBox> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        var box = new MessagePackWriterBox(buffer);
        write(box);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>MessagePackWriter is a ref struct and cannot be captured by a lambda; this carries one call at a time.</summary>
    private sealed class MessagePackWriterBox(IBufferWriter<byte> output)
    {
        private readonly IBufferWriter<byte> _output = output;

        public void WriteArrayHeader(int count) => With((ref MessagePackWriter w) => w.WriteArrayHeader(count));
        public void WriteMapHeader(int count) => With((ref MessagePackWriter w) => w.WriteMapHeader(count));
        public void WriteNil() => With((ref MessagePackWriter w) => w.WriteNil());
        public void Write(string value) => With((ref MessagePackWriter w) => w.Write(value));
        public void Write(int value) => With((ref MessagePackWriter w) => w.Write(value));
        public void Write(long value) => With((ref MessagePackWriter w) => w.Write(value));
        public void Write(double value) => With((ref MessagePackWriter w) => w.Write(value));
        public void Write(bool value) => With((ref MessagePackWriter w) => w.Write(value));
        private void With(WriteAction action)
        {
            var writer = new MessagePackWriter(_output);
            action(ref writer);
            writer.Flush();
        }

        private delegate void WriteAction(ref MessagePackWriter writer);
    }
}
