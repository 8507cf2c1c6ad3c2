using P2PInference.Facilities.Net;
using P2PInference.Facilities.Net.Transport;

namespace P2PInference.Workers.Cli;

/// <summary>Turns the failures a user can cause or meet into one clear stderr line and an exit code.</summary>
internal static class CliErrors
{
    public const int Failure = 1;

    public static async Task<int> RunAsync(TextWriter error, Func<Task<int>> action, int failureCode = Failure)
    {
        try
        {
            return await action();
        }
        catch (Exception e) when (Describe(e) is { } message)
        {
            await error.WriteLineAsync("error: " + message);
            return failureCode;
        }
    }

    internal static string? Describe(Exception e) => e switch
    {
        FormatException f => "invalid input: " + f.Message,
        TransportException t => "unreachable: " + t.Message,
        WireProtocolException w => "protocol error: " + w.Message,
        TimeoutException t => "timed out: " + t.Message,
        OperationCanceledException => "cancelled",
        FileNotFoundException f => f.Message,
        InvalidDataException d => d.Message,
        UnauthorizedAccessException u => u.Message,
        IOException io => "connection failed: " + io.Message,
        ArgumentException a => "invalid input: " + a.Message,
        _ => null,
    };
}
