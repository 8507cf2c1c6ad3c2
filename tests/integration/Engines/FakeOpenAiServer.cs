using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace P2PInference.Tests.Integration.Engines;

/// <summary>
/// A tiny HTTP/1.1 server on 127.0.0.1 (ephemeral port) that plays an OpenAI-compatible model
/// server: each request is recorded and answered by <see cref="Handler"/>, one connection per
/// request. It can also hang, and tells the test (by a task, not a sleep) when the client gave up.
/// </summary>
internal sealed class FakeOpenAiServer : IAsyncDisposable
{
    private const int MaxHeaderBytes = 64 * 1024;

    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private readonly TaskCompletionSource<RecordedRequest> _firstRequest = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _clientAborted = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public FakeOpenAiServer()
    {
        _listener.Start();
        _acceptLoop = AcceptLoopAsync();
    }

    public delegate Task Responder(RecordedRequest request, Stream connection, CancellationToken cancellationToken);

    public Uri BaseUrl => new($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}");

    public Responder Handler { get; set; } = File(200, "chat-stream.sse");

    public ConcurrentQueue<RecordedRequest> Requests { get; } = new();

    /// <summary>Completes when the first request has been read in full.</summary>
    public Task<RecordedRequest> FirstRequest => _firstRequest.Task;

    /// <summary>Completes when a client closed a connection the server was still holding open.</summary>
    public Task ClientAborted => _clientAborted.Task;

    public sealed record RecordedRequest(string Method, string Path, IReadOnlyDictionary<string, string> Headers, string Body);

    /// <summary>Answers with a fixture file: .sse as an event stream written event by event, .json as JSON.</summary>
    public static Responder File(int status, string fixture, params (string Name, string Value)[] headers) =>
        async (_, connection, ct) =>
        {
            var body = await System.IO.File.ReadAllBytesAsync(FixturePaths.OpenAi(fixture), ct);
            var sse = fixture.EndsWith(".sse", StringComparison.Ordinal);
            var head = Head(status, sse ? "text/event-stream" : "application/json", sse ? null : body.Length, headers);
            await connection.WriteAsync(head, ct);
            if (!sse)
            {
                await connection.WriteAsync(body, ct);
                return;
            }
            // One write per event, so the client sees a real stream rather than one buffer.
            foreach (var part in Encoding.UTF8.GetString(body).Split("\n\n"))
            {
                if (part.Length == 0) continue;
                await connection.WriteAsync(Encoding.UTF8.GetBytes(part + "\n\n"), ct);
                await connection.FlushAsync(ct);
            }
        };

    /// <summary>Reads the request, then never answers.</summary>
    public Responder HangBeforeHeaders() => (_, connection, ct) => WaitForClientToLeaveAsync(connection, ct);

    /// <summary>Sends the headers and the first event of <paramref name="fixture"/>, then never goes on.</summary>
    public Responder HangAfterFirstEvent(string fixture) =>
        async (_, connection, ct) =>
        {
            var first = System.IO.File.ReadAllText(FixturePaths.OpenAi(fixture)).Split("\n\n")[0] + "\n\n";
            await connection.WriteAsync(Head(200, "text/event-stream", null, []), ct);
            await connection.WriteAsync(Encoding.UTF8.GetBytes(first), ct);
            await connection.FlushAsync(ct);
            await WaitForClientToLeaveAsync(connection, ct);
        };

    /// <summary>A hostile server: an event stream whose first line never ends.</summary>
    public static Responder EndlessLine() =>
        async (_, connection, ct) =>
        {
            await connection.WriteAsync(Head(200, "text/event-stream", null, []), ct);
            var chunk = Encoding.ASCII.GetBytes("data: " + new string('x', 16 * 1024));
            try
            {
                while (!ct.IsCancellationRequested) await connection.WriteAsync(chunk, ct);
            }
            catch (IOException)
            {
                // The client hung up, as it should.
            }
        };

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        try
        {
            await _acceptLoop;
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Stopping.
        }
        _stop.Dispose();
    }

    private static byte[] Head(int status, string contentType, int? contentLength, (string Name, string Value)[] headers)
    {
        var text = new StringBuilder()
            .Append("HTTP/1.1 ").Append(status).Append(' ').Append(ReasonOf(status)).Append("\r\n")
            .Append("Content-Type: ").Append(contentType).Append("\r\n")
            .Append("Connection: close\r\n");
        if (contentLength is { } length) text.Append("Content-Length: ").Append(length).Append("\r\n");
        foreach (var (name, value) in headers) text.Append(name).Append(": ").Append(value).Append("\r\n");
        return Encoding.ASCII.GetBytes(text.Append("\r\n").ToString());
    }

    private static string ReasonOf(int status) => status switch
    {
        200 => "OK",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    };

    private async Task WaitForClientToLeaveAsync(Stream connection, CancellationToken ct)
    {
        var buffer = new byte[256];
        try
        {
            while (await connection.ReadAsync(buffer, ct) > 0)
            {
            }
        }
        catch (IOException)
        {
            // A reset is a way of leaving too.
        }
        if (!ct.IsCancellationRequested) _clientAborted.TrySetResult();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            var client = await _listener.AcceptTcpClientAsync(_stop.Token);
            _ = ServeAsync(client);
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            var connection = client.GetStream();
            try
            {
                var request = await ReadRequestAsync(connection, _stop.Token);
                Requests.Enqueue(request);
                _firstRequest.TrySetResult(request);
                await Handler(request, connection, _stop.Token);
                await connection.FlushAsync(_stop.Token);
                client.Client.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
                // The client went away or the server is stopping.
            }
        }
    }

    private static async Task<RecordedRequest> ReadRequestAsync(Stream connection, CancellationToken ct)
    {
        var buffer = new List<byte>();
        var one = new byte[1];
        while (true)
        {
            if (await connection.ReadAsync(one, ct) == 0) throw new IOException("The client closed before sending a request.");
            buffer.Add(one[0]);
            if (buffer.Count > MaxHeaderBytes) throw new IOException("Request headers too long.");
            if (buffer.Count >= 4 && buffer[^1] == '\n' && buffer[^2] == '\r' && buffer[^3] == '\n' && buffer[^4] == '\r') break;
        }
        var lines = Encoding.ASCII.GetString(buffer.ToArray()).Split("\r\n", StringSplitOptions.RemoveEmptyEntries);
        var requestLine = lines[0].Split(' ');
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in lines.Skip(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            headers[line[..colon].Trim()] = line[(colon + 1)..].Trim();
        }
        var body = Array.Empty<byte>();
        if (headers.TryGetValue("Content-Length", out var lengthText) && int.TryParse(lengthText, out var length) && length > 0)
        {
            body = new byte[length];
            await connection.ReadExactlyAsync(body, ct);
        }
        return new RecordedRequest(requestLine[0], requestLine[1], headers, Encoding.UTF8.GetString(body));
    }
}
