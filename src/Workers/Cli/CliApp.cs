using System.CommandLine;

namespace P2PInference.Workers.Cli;

/// <summary>The <c>p2pinference</c> command line.</summary>
public static class CliApp
{
    public static RootCommand BuildRootCommand(TextWriter output, TextWriter error)
    {
        var root = new RootCommand("P2PInference: a peer-to-peer worker runtime for distributed inference");
        root.Subcommands.Add(NodeCommand.Create(output, error));
        root.Subcommands.Add(PingCommand.Create(output, error));
        root.Subcommands.Add(IdentifyCommand.Create(output, error));
        root.Subcommands.Add(KeygenCommand.Create(output, error));
        root.Subcommands.Add(ClusterCommand.Create(output, error));
        root.Subcommands.Add(DhtCommand.Create(output, error));
        root.Subcommands.Add(NatCommand.Create(output, error));
        root.Subcommands.Add(RunCommand.Create(output, error));
        root.Subcommands.Add(DemoCommand.Create(output, error));
        root.Subcommands.Add(ClientCommand.Create(output, error));
        root.Subcommands.Add(SimulateCommand.Create(output, error));
        return root;
    }

    public static async Task<int> RunAsync(string[] args, TextWriter? output = null, TextWriter? error = null)
    {
        output ??= Console.Out;
        error ??= Console.Error;
        var root = BuildRootCommand(output, error);
        // Long-running commands stop gracefully on SIGINT/SIGTERM themselves (ShutdownSignal) and exit 0.
        var config = new InvocationConfiguration { Output = output, Error = error, ProcessTerminationTimeout = null };
        return await root.Parse(args).InvokeAsync(config);
    }
}
