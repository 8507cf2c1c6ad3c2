using System.Text;
using P2PInference.Facilities.Addressing;
using P2PInference.Workers.Client;

namespace P2PInference.Workers.Cli;

/// <summary>
/// What <c>p2pinference client</c> takes from the outside world: how it joins the network, the
/// console it reads passwords from, the clock and where profiles live. Tests hand it twins.
/// </summary>
internal sealed class ClientCommandEnvironment
{
    public required Func<IReadOnlyList<Multiaddress>, ClientOptions, CancellationToken, Task<P2PInferenceClient>> Connect { get; init; }

    /// <summary>Standard input: a redirected password is its first line.</summary>
    public required TextReader Input { get; init; }

    /// <summary>True when standard input is a terminal, so the password is prompted for without echo.</summary>
    public required bool InputIsTerminal { get; init; }

    /// <summary>Shows the prompt and reads a line without echoing it.</summary>
    public required Func<string, CancellationToken, string?> ReadSecret { get; init; }

    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>Reads an environment variable (<see cref="ClientCommand.ApiKeyVariable"/>); null when unset.</summary>
    public Func<string, string?> Variable { get; init; } = Environment.GetEnvironmentVariable;

    public required string DefaultProfilePath { get; init; }

    /// <summary>Where <c>client serve</c> logs (errors by default: its output is the address it serves).</summary>
    public Microsoft.Extensions.Logging.ILoggerFactory LoggerFactory { get; init; } = Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance;

    public static ClientCommandEnvironment Default() => new()
    {
        Connect = P2PInferenceClient.ConnectAsync,
        Input = Console.In,
        InputIsTerminal = !Console.IsInputRedirected,
        ReadSecret = ReadSecretFromConsole,
        DefaultProfilePath = ClientProfile.DefaultPath,
        LoggerFactory = CliNode.CreateLoggerFactory(Microsoft.Extensions.Logging.LogLevel.Warning),
    };

    /// <summary>Reads keys with <c>intercept: true</c> so the password never shows; Backspace edits, Enter ends.</summary>
    private static string? ReadSecretFromConsole(string prompt, CancellationToken cancellationToken)
    {
        Console.Error.Write(prompt);
        var secret = new StringBuilder();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var key = Console.ReadKey(intercept: true);
            if (key.Key == ConsoleKey.Enter) break;
            if (key.Key == ConsoleKey.Backspace)
            {
                if (secret.Length > 0) secret.Length--;
                continue;
            }
            if (!char.IsControl(key.KeyChar)) secret.Append(key.KeyChar);
        }
        Console.Error.WriteLine();
        return secret.ToString();
    }
}
