using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace P2PInference.Workers.Processor.Engines;

/// <summary>
/// Sits under the OpenAI SDK, on the bytes of an untrusted server: bounds every answer (a whole
/// body, or one line of an event stream) before the SDK buffers it, and turns a whole
/// <c>chat.completion</c> from a server that ignored <c>stream: true</c> into the one-event stream
/// the SDK reads.
/// </summary>
internal sealed class OpenAiResponseGuard(HttpMessageHandler inner, int maxResponseBytes) : DelegatingHandler(inner)
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var response = await base.SendAsync(request, cancellationToken);
        var content = response.Content;
        var eventStream = string.Equals(content.Headers.ContentType?.MediaType, "text/event-stream", StringComparison.OrdinalIgnoreCase);
        if (!eventStream && content.Headers.ContentLength is { } declared && declared > maxResponseBytes)
        {
            response.Dispose();
            throw TooLarge();
        }
        if (response.IsSuccessStatusCode && !eventStream && request.Method == HttpMethod.Post
            && request.RequestUri?.AbsolutePath.EndsWith("/chat/completions", StringComparison.Ordinal) == true)
        {
            var body = await ReadBoundedAsync(content, cancellationToken);
            content.Dispose();
            // Not seekable, like a network stream: the SDK expects a seekable body to be one it buffered itself.
            response.Content = new StreamContent(new BoundedStream(new MemoryStream(AsEventStream(body)), int.MaxValue, perLine: true));
            response.Content.Headers.ContentType = new MediaTypeHeaderValue("text/event-stream");
            return response;
        }
        var stream = await content.ReadAsStreamAsync(cancellationToken);
        var bounded = new StreamContent(new BoundedStream(stream, maxResponseBytes, perLine: eventStream));
        foreach (var header in content.Headers) bounded.Headers.TryAddWithoutValidation(header.Key, header.Value);
        response.Content = bounded;
        return response;
    }

    /// <summary>
    /// A <c>chat.completion</c> as the equivalent <c>chat.completion.chunk</c> event: each choice's
    /// <c>message</c> becomes its <c>delta</c>. Text that is not a JSON object is passed on as the
    /// event's data, for the SDK to reject as malformed.
    /// </summary>
    internal static byte[] AsEventStream(byte[] body)
    {
        string data;
        try
        {
            var root = JsonNode.Parse(body);
            if (root is JsonObject document && document["choices"] is JsonArray choices)
            {
                foreach (var choice in choices.OfType<JsonObject>())
                {
                    if (choice.Remove("message", out var message)) choice["delta"] = message;
                }
            }
            data = root?.ToJsonString() ?? "null";
        }
        catch (System.Text.Json.JsonException)
        {
            data = Encoding.UTF8.GetString(body).ReplaceLineEndings(" ");
        }
        return Encoding.UTF8.GetBytes("data: " + data + "\n\ndata: [DONE]\n\n");
    }

    private async Task<byte[]> ReadBoundedAsync(HttpContent content, CancellationToken cancellationToken)
    {
        var stream = await content.ReadAsStreamAsync(cancellationToken);
        await using var streamScope = stream;
        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int read;
        while ((read = await stream.ReadAsync(chunk, cancellationToken)) > 0)
        {
            if (buffer.Length + read > maxResponseBytes) throw TooLarge();
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    private InferenceException TooLarge() =>
        new(InferenceErrorKind.MalformedResponse, $"The model server's answer is larger than {maxResponseBytes} bytes.");

    /// <summary>Fails a read once a body (or one line, for an event stream) passes the bound, so a hostile server cannot grow a buffer.</summary>
    private sealed class BoundedStream(Stream inner, int limit, bool perLine) : Stream
    {
        private long _counted;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Count(buffer.AsSpan(offset, inner.Read(buffer, offset, count)));

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var read = await inner.ReadAsync(buffer, cancellationToken);
            return Count(buffer.Span[..read]);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }

        private int Count(ReadOnlySpan<byte> read)
        {
            if (perLine)
            {
                var newline = read.LastIndexOf((byte)'\n');
                _counted = newline >= 0 ? read.Length - newline - 1 : _counted + read.Length;
            }
            else
            {
                _counted += read.Length;
            }
            if (_counted > limit)
            {
                throw new InferenceException(InferenceErrorKind.MalformedResponse,
                    perLine ? $"The model server sent an event line longer than {limit} bytes." : $"The model server's answer is larger than {limit} bytes.");
            }
            return read.Length;
        }
    }
}
