using System.CommandLine;

namespace P2PInference.Workers.Cli;

/// <summary>The <c>p2pinference</c> command line.</summary>
public static class CliApp
{
    public static async Task<int> RunAsync(string[] args)
    {
        var root = new RootCommand("P2PInference: a peer-to-peer worker runtime for distributed inference");
        return await root.Parse(args).InvokeAsync().ConfigureAwait(false);
    }
}
