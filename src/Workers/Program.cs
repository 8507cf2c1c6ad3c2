using P2PInference.Workers.Cli;

return await CliApp.RunAsync(args);
