using System.CommandLine;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using P2PInference.Workers.Hosting;

namespace P2PInference.Workers.Cli;

/// <summary>
/// <c>p2pinference run bootstrap|auth|gateway|processor</c>: runs one worker until SIGINT or SIGTERM,
/// then stops gracefully. Exit 0 after a clean stop, 2 on a configuration mistake (each on its own
/// stderr line), 1 when the worker cannot start.
/// </summary>
internal static class RunCommand
{
    public const int ConfigurationError = 2;

    public static Command Create(TextWriter output, TextWriter error)
    {
        var role = new Argument<string>("role") { Description = "bootstrap, auth, gateway or processor" };
        var config = new Option<string?>("--config") { Description = "JSON configuration file (see fixtures/configs/)" };
        var dataDir = new Option<string?>("--data-dir") { Description = "Directory of the node's identity key and store (default data/<role>)" };
        var listen = new Option<string[]>("--listen") { Description = "Address to listen on (repeatable), e.g. /ip4/127.0.0.1/tcp/4001" };
        var bootstrap = new Option<string[]>("--bootstrap") { Description = "DHT peer to join through (repeatable), e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…" };
        var environment = new Option<string?>("--environment") { Description = "Loads appsettings.<NAME>.json too (default: $P2PINFERENCE_ENVIRONMENT)" };
        var grant = new Option<string?>("--grant") { Description = "This worker's role grant (from `p2pinference cluster grant`)" };
        var clusterKey = new Option<string?>("--cluster-key") { Description = "The cluster key (from `p2pinference cluster init`): the worker signs its own grant" };
        var json = CliOptions.Json();
        var command = new Command("run", "Run one worker until interrupted (SIGINT/SIGTERM), then stop gracefully")
        {
            role, config, dataDir, listen, bootstrap, environment, grant, clusterKey, json,
        };
        command.SetAction((result, ct) => CliErrors.RunAsync(error, async () =>
        {
            WorkerSettings settings;
            try
            {
                settings = WorkerConfiguration.Load(result.GetValue(role)!, new WorkerConfigurationSources
                {
                    ConfigPath = result.GetValue(config),
                    DataDir = result.GetValue(dataDir),
                    Listen = result.GetValue(listen),
                    Bootstrap = result.GetValue(bootstrap),
                    Environment = result.GetValue(environment),
                    Grant = result.GetValue(grant),
                    ClusterKey = result.GetValue(clusterKey),
                });
                if (settings.Role != WorkerRole.Bootstrap && settings.Trust.Grant is null && settings.Trust.ClusterKey is null)
                    throw new WorkerConfigurationException([WorkerTrust.MissingGrantMessage(settings.Role)]);
            }
            catch (WorkerConfigurationException e)
            {
                foreach (var line in e.Errors) await error.WriteLineAsync("error: " + line);
                return ConfigurationError;
            }

            using var logging = CliNode.CreateLoggerFactory(settings.Node.LogLevel);
            var worker = WorkerFactory.Create(settings);
            WorkerRuntimeOptions runtimeOptions;
            try
            {
                runtimeOptions = settings.ToRuntimeOptions(loggerFactory: logging);
            }
            catch (WorkerConfigurationException e)
            {
                foreach (var line in e.Errors) await error.WriteLineAsync("error: " + line);
                return ConfigurationError;
            }
            await using var runtime = new WorkerRuntime(runtimeOptions, worker);
            try
            {
                await runtime.StartAsync(ct);
            }
            catch (WorkerConfigurationException e)
            {
                // Found only at start (e.g. a grant for another peer): still a configuration mistake, reported as one.
                foreach (var line in e.Errors) await error.WriteLineAsync("error: " + line);
                return ConfigurationError;
            }
            // Caught from before the ready line: whoever reads it may signal at once. Before, a signal ends the start the default way.
            using var shutdown = ShutdownSignal.Listen();
            await PrintReadyAsync(output, runtime, result.GetValue(json), ct);
            await shutdown.WaitAsync(ct);
            await runtime.StopAsync(CancellationToken.None);
            return 0;
        }));
        return command;
    }

    private static async Task PrintReadyAsync(TextWriter output, WorkerRuntime runtime, bool json, CancellationToken cancellationToken)
    {
        var addresses = runtime.Addresses.Select(a => a.ToString()).ToArray();
        var role = WorkerRoles.NameOf(runtime.Role);
        if (json)
        {
            await output.WriteLineAsync(JsonSerializer.Serialize(new
            {
                role,
                peerId = runtime.PeerId.ToString(),
                addrs = addresses,
                topics = runtime.Topics,
            }));
        }
        else
        {
            await output.WriteLineAsync($"{role} ready: {runtime.PeerId}");
            foreach (var address in addresses) await output.WriteLineAsync(address);
        }

        await output.FlushAsync(cancellationToken);
    }
}
