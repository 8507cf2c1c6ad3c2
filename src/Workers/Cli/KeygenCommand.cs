using System.CommandLine;
using P2PInference.Facilities.Identity;

namespace P2PInference.Workers.Cli;

/// <summary><c>p2pinference keygen --out PATH</c>: a new Ed25519 key file; prints its PeerId.</summary>
internal static class KeygenCommand
{
    public static Command Create(TextWriter output, TextWriter error)
    {
        var path = new Option<string>("--out", "-o") { Description = "Where to write the key file", Required = true };
        var force = new Option<bool>("--force") { Description = "Overwrite an existing key file" };
        var command = new Command("keygen", "Create a new node identity (Ed25519 key) and print its PeerId") { path, force };
        command.SetAction((result, _) => CliErrors.RunAsync(error, async () =>
        {
            var file = result.GetValue(path)!;
            if (File.Exists(file) && !result.GetValue(force))
                throw new ArgumentException($"'{file}' already exists; pass --force to replace it (its PeerId would be lost)");
            var key = KeyPair.Generate();
            KeyFile.Save(file, key);
            await output.WriteLineAsync(key.PeerId.ToString());
            return 0;
        }));
        return command;
    }
}
