using System.Net;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;

namespace P2PInference.Workers.Client.OpenAi;

/// <summary>
/// What keeps web pages out of <c>client serve</c>, whose requests run on the profile's credentials
/// when they carry no key of their own. A page the user visits can send a "simple" cross-site POST
/// (no CORS preflight) to <c>http://127.0.0.1:8080</c>, and with DNS rebinding (a name of the
/// attacker's that resolves to 127.0.0.1) also read the answers. So, as local developer servers do:
/// <list type="bullet">
/// <item>the <c>Host</c> header must be a loopback name (<c>localhost</c>, <c>127.0.0.1</c>,
/// <c>[::1]</c>) or the address served on (any IP literal when serving on every address: an IP
/// cannot be rebound), with the port the request came in on; else 403;</item>
/// <item>a request with an <c>Origin</c> header (browsers send one on cross-site POSTs and fetches;
/// the OpenAI SDKs and curl do not) is refused unless it is <c>http://</c> a loopback name with the
/// port served on; else 403;</item>
/// <item>a POST body must be <c>Content-Type: application/json</c> (parameters such as charset
/// allowed), else 415: a page can only send that after a CORS preflight, which is not answered.</item>
/// </list>
/// </summary>
internal sealed class OpenAiGuard(IPAddress listen)
{
    private static readonly string[] LoopbackNames = ["localhost", "127.0.0.1", "[::1]"];

    private readonly bool _anyAddress = listen.Equals(IPAddress.Any) || listen.Equals(IPAddress.IPv6Any);

    /// <summary>Why this request is refused before anything is read or sent on; null when it may go on.</summary>
    public OpenAiError? Refusal(HttpContext context, bool hasBody)
    {
        var request = context.Request;
        var port = context.Connection.LocalPort;
        var host = request.Host;
        if (!host.HasValue || (host.Port ?? 80) != port || !IsAllowedHost(host.Host))
            return new OpenAiError(403, "invalid_request_error", "host_not_allowed",
                $"the Host header '{host.Value}' is not this server's address; use http://127.0.0.1:{port} (requests by other names are refused, against DNS rebinding)");
        if (request.Headers.ContainsKey(HeaderNames.Origin) && !IsOwnOrigin(request.Headers.Origin.ToString(), port))
            return new OpenAiError(403, "invalid_request_error", "cross_origin_refused",
                "cross-origin requests are refused: this endpoint is for local programs, not web pages");
        if (hasBody && !IsJson(request.ContentType))
            return new OpenAiError(415, "invalid_request_error", "unsupported_media_type",
                "the body must be sent as Content-Type: application/json");
        return null;
    }

    private bool IsAllowedHost(string host)
    {
        if (LoopbackNames.Contains(host, StringComparer.OrdinalIgnoreCase)) return true;
        // Only an address as it is written canonically (HostString brackets IPv6): not "1" for 0.0.0.1.
        if (!IPAddress.TryParse(host.Trim('[', ']'), out var address) || host != Written(address)) return false;
        return _anyAddress || address.Equals(listen);
    }

    private static string Written(IPAddress address) =>
        address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();

    /// <summary>Only a page served by this very endpoint on a loopback name, e.g. <c>http://127.0.0.1:8080</c>.</summary>
    private static bool IsOwnOrigin(string origin, int port) =>
        LoopbackNames.Any(name => origin.Equals($"http://{name}:{port}", StringComparison.OrdinalIgnoreCase)
            || (port == 80 && origin.Equals($"http://{name}", StringComparison.OrdinalIgnoreCase)));

    private static bool IsJson(string? contentType) =>
        MediaTypeHeaderValue.TryParse(contentType, out var type)
        && type.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase);
}
