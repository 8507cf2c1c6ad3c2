using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace P2PInference.Workers.Client.OpenAi;

/// <summary>
/// The local OpenAI-compatible HTTP endpoint of <c>p2pinference client serve</c>: Kestrel with
/// <see cref="OpenAiApi"/>'s routes, on loopback unless told otherwise, refusing web pages
/// (<see cref="OpenAiGuard"/>: Host, Origin and Content-Type checks).
/// </summary>
public sealed class OpenAiServer : IAsyncDisposable
{
    /// <summary>Where <c>client serve</c> listens when not told: loopback only, so nothing off the machine reaches the profile's credentials.</summary>
    public static readonly IPEndPoint DefaultListen = new(IPAddress.Loopback, 8080);

    /// <summary>How long requests in flight may go on after serving stops; then their connections are closed, which cancels them.</summary>
    public static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(5);

    private readonly WebApplication _app;
    private readonly TimeProvider _time;

    private OpenAiServer(WebApplication app, Uri address, TimeProvider time)
    {
        _app = app;
        Address = address;
        _time = time;
    }

    /// <summary>The base address clients use, e.g. <c>http://127.0.0.1:8080/v1</c>.</summary>
    public Uri Address { get; }

    /// <summary>
    /// Starts serving on <paramref name="listen"/> (port 0: any free port) and forwards every request
    /// through <paramref name="client"/>, which stays the caller's.
    /// </summary>
    public static async Task<OpenAiServer> StartAsync(IPEndPoint listen, P2PInferenceClient client, ILoggerFactory loggerFactory,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(listen);
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(options =>
        {
            options.AddServerHeader = false;
            options.Limits.MaxRequestBodySize = OpenAiRequest.MaxBodyBytes;
            options.Listen(listen);
        });
        builder.Services.AddRoutingCore();
        builder.Services.AddSingleton(loggerFactory);
        builder.Services.AddSingleton(typeof(ILogger<>), typeof(Logger<>));
        var app = builder.Build();
        var api = new OpenAiApi(client, client.Options.TimeProvider, loggerFactory.CreateLogger<OpenAiServer>(), new OpenAiGuard(listen.Address));
        app.UseRouting();
        app.MapPost("/v1/chat/completions", (RequestDelegate)api.ChatCompletionsAsync);
        app.MapPost("/v1/completions", (RequestDelegate)api.CompletionsAsync);
        app.MapGet("/v1/models", (RequestDelegate)api.ModelsAsync);
        app.MapFallback((RequestDelegate)api.NotFoundAsync);
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault()
            ?? $"http://{listen}";
        return new OpenAiServer(app, new Uri(bound.TrimEnd('/') + "/v1"), client.Options.TimeProvider);
    }

    /// <summary>Stops accepting, cancels what is in flight (each request's cancel reaches the network) and releases the port.</summary>
    public async ValueTask DisposeAsync()
    {
        using (var grace = new CancellationTokenSource(StopGrace, _time))
        {
            await _app.StopAsync(grace.Token);
        }
        await _app.DisposeAsync();
    }
}
