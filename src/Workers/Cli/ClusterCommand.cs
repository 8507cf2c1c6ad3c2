using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Trust;

namespace P2PInference.Workers.Cli;

/// <summary>
/// <c>p2pinference cluster init|grant|revoke</c>: the operator's trust root. <c>init</c> creates the cluster
/// key (owner-only) and prints the cluster id clients are given; <c>grant</c> signs a role grant for
/// one PeerId, which that worker then runs with (<c>run ROLE --grant FILE</c>); <c>revoke</c> signs a
/// revocation list, which workers load (<c>Trust:RevocationList</c>) and hand on to each other and to clients.
/// </summary>
internal static class ClusterCommand
{
    public static readonly TimeSpan DefaultValidity = TimeSpan.FromDays(30);

    public static Command Create(TextWriter output, TextWriter error)
    {
        var command = new Command("cluster", "Create a cluster key and issue role grants (who may act as auth, gateway or processor)");
        command.Subcommands.Add(Init(output, error));
        command.Subcommands.Add(Grant(output, error));
        command.Subcommands.Add(Revoke(output, error));
        return command;
    }

    private static Command Init(TextWriter output, TextWriter error)
    {
        var path = new Option<string>("--out", "-o") { Description = "Where to write the cluster key (owner-only, 0600)", Required = true };
        var force = new Option<bool>("--force") { Description = "Overwrite an existing key file (every grant it issued stops being valid)" };
        var json = CliOptions.Json();
        var command = new Command("init", "Create the cluster key and print the cluster id") { path, force, json };
        command.SetAction((result, _) => CliErrors.RunAsync(error, async () =>
        {
            var file = result.GetValue(path)!;
            if (File.Exists(file) && !result.GetValue(force))
                throw new ArgumentException($"'{file}' already exists; pass --force to replace it (every grant it issued would stop being valid)");
            var key = ClusterKey.Generate(SystemRandomSource.Instance);
            key.Save(file);
            await output.WriteLineAsync(result.GetValue(json)
                ? JsonSerializer.Serialize(new { clusterId = key.Id.ToString() })
                : key.Id.ToString());
            return 0;
        }));
        return command;
    }

    private static Command Grant(TextWriter output, TextWriter error)
    {
        var keyPath = new Option<string>("--cluster-key") { Description = "The cluster key file (from cluster init)", Required = true };
        var role = new Option<string>("--role") { Description = "auth, gateway or processor", Required = true };
        var peer = new Option<string>("--peer") { Description = "The PeerId of the worker (keygen prints it)", Required = true };
        var valid = new Option<string?>("--valid") { Description = "How long the grant is valid: 30d, 12h, 90m, or d.hh:mm:ss (default 30d)" };
        var path = new Option<string>("--out", "-o") { Description = "Where to write the grant", Required = true };
        var json = CliOptions.Json();
        var command = new Command("grant", "Sign a role grant for one worker's PeerId") { keyPath, role, peer, valid, path, json };
        command.SetAction((result, _) => CliErrors.RunAsync(error, async () =>
        {
            if (!GrantRoles.TryParse(result.GetValue(role), out var grantRole))
                throw new ArgumentException($"--role: '{result.GetValue(role)}' is not a role; expected auth, gateway or processor");
            var peerId = PeerId.Parse(result.GetValue(peer)!);
            var validity = result.GetValue(valid) is { } text ? ParseDuration(text) : DefaultValidity;
            var key = ClusterKey.Load(result.GetValue(keyPath)!);
            var grant = key.Issue(peerId, grantRole, TimeProvider.System.GetUtcNow(), validity, SystemRandomSource.Instance);
            var file = result.GetValue(path)!;
            var full = Path.GetFullPath(file);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            await File.WriteAllTextAsync(full, grant.ToText() + "\n");
            await output.WriteLineAsync(result.GetValue(json)
                ? JsonSerializer.Serialize(new
                {
                    clusterId = grant.Cluster.ToString(),
                    role = grant.Role.Name(),
                    peerId = grant.Peer.ToString(),
                    serial = grant.SerialText,
                    notBefore = grant.NotBefore,
                    expiry = grant.Expiry,
                })
                : grant.ToString());
            return 0;
        }));
        return command;
    }

    private static Command Revoke(TextWriter output, TextWriter error)
    {
        var keyPath = new Option<string>("--cluster-key") { Description = "The cluster key file (from cluster init)", Required = true };
        var list = new Option<string>("--list") { Description = "The revocation list: a grant serial (16 hex digits) or a PeerId a line, # comments", Required = true };
        var path = new Option<string>("--out", "-o") { Description = "Where to write the signed list (give it to a worker as Trust:RevocationList)", Required = true };
        var json = CliOptions.Json();
        var command = new Command("revoke", "Sign a revocation list that workers hand on to each other and to clients; it replaces any list signed before")
        {
            keyPath, list, path, json,
        };
        command.SetAction((result, _) => CliErrors.RunAsync(error, async () =>
        {
            var revocations = RevocationList.Load(result.GetValue(list)!);
            var key = ClusterKey.Load(result.GetValue(keyPath)!);
            var signed = key.SignRevocations(revocations, TimeProvider.System.GetUtcNow());
            var full = Path.GetFullPath(result.GetValue(path)!);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            await File.WriteAllTextAsync(full, signed.ToText() + "\n");
            await output.WriteLineAsync(result.GetValue(json)
                ? JsonSerializer.Serialize(new
                {
                    clusterId = signed.Cluster.ToString(),
                    issued = signed.Issued,
                    entries = signed.List.Count,
                })
                : signed.ToString());
            return 0;
        }));
        return command;
    }

    /// <exception cref="FormatException">Not a positive duration.</exception>
    internal static TimeSpan ParseDuration(string text)
    {
        text = text.Trim();
        TimeSpan value;
        if (text.Length > 1 && char.IsLetter(text[^1]) && double.TryParse(text[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var amount))
        {
            value = char.ToLowerInvariant(text[^1]) switch
            {
                'd' => TimeSpan.FromDays(amount),
                'h' => TimeSpan.FromHours(amount),
                'm' => TimeSpan.FromMinutes(amount),
                's' => TimeSpan.FromSeconds(amount),
                _ => throw new FormatException($"'{text}' is not a duration (e.g. 30d, 12h, 90m)"),
            };
        }
        else if (!TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out value))
        {
            throw new FormatException($"'{text}' is not a duration (e.g. 30d, 12h, 90m)");
        }
        if (value <= TimeSpan.Zero) throw new FormatException($"'{text}': a grant must be valid for some time");
        return value;
    }
}
