using System.Collections;
using Microsoft.Extensions.Configuration;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Net.Host;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Gateway;
using P2PInference.Workers.Processor;
using P2PInference.Workers.Processor.Engines;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// Loads a worker's configuration with Microsoft.Extensions.Configuration, lowest precedence first:
/// the defaults (fixtures/configs/defaults.json, embedded in the program), <c>appsettings.{Environment}.json</c>,
/// the <c>--config</c> file, <c>P2PINFERENCE_*</c> environment variables, the command line. Every
/// section is then bound and validated, and every mistake is reported at once.
/// </summary>
public static class WorkerConfiguration
{
    public const string DefaultsResource = "P2PInference.Workers.Hosting.defaults.json";

    private static readonly string[] KnownSections = ["Node", "Host", "Dht", "Rpc", "Nat", "Auth", "Gateway", "Processor", "Trust"];

    /// <exception cref="WorkerConfigurationException">Unknown role, unreadable file, or any invalid setting (all are listed).</exception>
    public static WorkerSettings Load(string role, WorkerConfigurationSources sources) => Load(WorkerRoles.Parse(role), sources);

    /// <exception cref="WorkerConfigurationException">Unreadable file, or any invalid setting (all are listed).</exception>
    public static WorkerSettings Load(WorkerRole role, WorkerConfigurationSources sources)
    {
        ArgumentNullException.ThrowIfNull(sources);
        var configuration = Build(sources);
        var errors = new List<string>();
        foreach (var section in configuration.GetChildren())
        {
            if (!KnownSections.Contains(section.Key, StringComparer.OrdinalIgnoreCase))
                errors.Add($"{section.Key} is not a known section (known: {string.Join(", ", KnownSections)})");
        }

        var node = ConfigurationBinding.Bind<NodeSettings>(configuration.GetSection("Node"), errors);
        var dht = ConfigurationBinding.Bind<DhtSettings>(configuration.GetSection("Dht"), errors);
        var rpc = ConfigurationBinding.Bind<RpcSettings>(configuration.GetSection("Rpc"), errors);
        var host = ConfigurationBinding.Bind<HostSettings>(configuration.GetSection("Host"), errors);
        var nat = ConfigurationBinding.Bind<NatSettings>(configuration.GetSection("Nat"), errors);
        var auth = ConfigurationBinding.Bind<AuthOptions>(configuration.GetSection("Auth"), errors);
        var gateway = ConfigurationBinding.Bind<GatewayOptions>(configuration.GetSection("Gateway"), errors);
        var processor = ConfigurationBinding.Bind<ProcessorOptions>(configuration.GetSection("Processor"), errors);
        var trust = ConfigurationBinding.Bind<TrustSettings>(configuration.GetSection("Trust"), errors);

        var listen = ParseAddresses("Node:Listen", node.Listen, errors, requirePeerId: false);
        var bootstrap = ParseAddresses("Node:Bootstrap", node.Bootstrap, errors, requirePeerId: true);
        var dataDirectory = ResolveDataDirectory(role, node.DataDir, errors);
        ValidateNode(node, errors);
        ValidateDht(dht, errors);
        ValidateRpc(rpc, errors);
        ValidateHost(host, errors);
        var relays = ParseAddresses("Nat:Relays", nat.Relays, errors, requirePeerId: true);
        ValidateNat(nat, errors);
        Timer("Trust:CachePeriod", trust.CachePeriod, errors);
        Positive("Trust:SelfGrantValidity", trust.SelfGrantValidity, errors);
        ValidateEachSetting(configuration.GetSection("Auth"), auth, o => o.Validate(), errors);
        ValidateEachSetting(configuration.GetSection("Gateway"), gateway, o => o.Validate(), errors);
        errors.AddRange(processor.Validate().Select(m => m.TrimEnd('.')));
        if (processor.Engine is not null) errors.AddRange(InferenceEngineFactory.Validate(processor.Engine).Select(m => m.TrimEnd('.')));

        if (errors.Count > 0) throw new WorkerConfigurationException(errors);
        return new WorkerSettings
        {
            Role = role,
            Node = node,
            Dht = dht,
            Rpc = rpc,
            Host = host,
            Nat = nat,
            RelayAddresses = relays,
            Auth = auth,
            Gateway = gateway,
            Processor = processor,
            Trust = trust,
            Configuration = configuration,
            DataDirectory = dataDirectory!,
            ListenAddresses = listen,
            BootstrapPeers = bootstrap,
        };
    }

    /// <summary>The merged configuration, unvalidated.</summary>
    /// <exception cref="WorkerConfigurationException">A file is missing or is not valid JSON.</exception>
    public static IConfigurationRoot Build(WorkerConfigurationSources sources)
    {
        ArgumentNullException.ThrowIfNull(sources);
        var variables = sources.EnvironmentVariables ?? ProcessEnvironment();
        var environment = sources.Environment ?? Lookup(variables, WorkerConfigurationSources.EnvironmentVariable);
        var builder = new ConfigurationBuilder();
        builder.AddJsonStream(OpenDefaults());
        string? environmentFile = null;
        if (!string.IsNullOrWhiteSpace(environment))
        {
            environmentFile = Path.GetFullPath(Path.Combine(sources.BaseDirectory ?? Directory.GetCurrentDirectory(), $"appsettings.{environment.Trim()}.json"));
            builder.AddJsonFile(environmentFile, optional: true, reloadOnChange: false);
        }

        string? configFile = null;
        if (sources.ConfigPath is { } path)
        {
            configFile = Path.GetFullPath(path);
            if (!File.Exists(configFile)) throw new WorkerConfigurationException([$"config file '{path}' does not exist"]);
            builder.AddJsonFile(configFile, optional: false, reloadOnChange: false);
        }

        builder.AddInMemoryCollection(FromEnvironment(variables));
        builder.AddInMemoryCollection(FromCommandLine(sources));
        try
        {
            return builder.Build();
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or IOException or System.Text.Json.JsonException)
        {
            var file = e.Message.Contains(configFile ?? "\0", StringComparison.Ordinal) ? configFile
                : e.Message.Contains(environmentFile ?? "\0", StringComparison.Ordinal) ? environmentFile
                : configFile ?? environmentFile;
            var reason = e.InnerException?.Message ?? e.Message;
            throw new WorkerConfigurationException([$"config file '{file}' is not valid JSON: {reason}"], e);
        }
    }

    private static Stream OpenDefaults() =>
        typeof(WorkerConfiguration).Assembly.GetManifestResourceStream(DefaultsResource)
        ?? throw new InvalidOperationException($"the program lacks its embedded defaults ({DefaultsResource})");

    private static IEnumerable<KeyValuePair<string, string?>> FromEnvironment(IReadOnlyDictionary<string, string?> variables)
    {
        foreach (var (name, value) in variables)
        {
            if (!name.StartsWith(WorkerConfigurationSources.EnvironmentPrefix, StringComparison.OrdinalIgnoreCase)) continue;
            if (WorkerConfigurationSources.NotSettings.Contains(name, StringComparer.OrdinalIgnoreCase)) continue;
            var key = name[WorkerConfigurationSources.EnvironmentPrefix.Length..].Replace("__", ConfigurationPath.KeyDelimiter, StringComparison.Ordinal);
            if (key.Length > 0) yield return new(key, value);
        }
    }

    private static IEnumerable<KeyValuePair<string, string?>> FromCommandLine(WorkerConfigurationSources sources)
    {
        if (sources.DataDir is { } dataDir) yield return new("Node:DataDir", dataDir);
        if (sources.Grant is { } grant) yield return new("Trust:Grant", grant);
        if (sources.ClusterKey is { } clusterKey) yield return new("Trust:ClusterKey", clusterKey);
        // A list given as one value replaces the lower layers' indexed entries (see ConfigurationBinding).
        if (sources.Listen is { Count: > 0 } listen) yield return new("Node:Listen", string.Join(',', listen));
        if (sources.Bootstrap is { Count: > 0 } bootstrap) yield return new("Node:Bootstrap", string.Join(',', bootstrap));
        foreach (var pair in sources.Overrides ?? new Dictionary<string, string?>()) yield return pair;
    }

    private static Dictionary<string, string?> ProcessEnvironment()
    {
        var result = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (DictionaryEntry entry in Environment.GetEnvironmentVariables())
            result[(string)entry.Key] = entry.Value as string;
        return result;
    }

    private static string? Lookup(IReadOnlyDictionary<string, string?> variables, string name) =>
        variables.FirstOrDefault(p => string.Equals(p.Key, name, StringComparison.OrdinalIgnoreCase)).Value;

    private static List<Multiaddress> ParseAddresses(string path, List<string> texts, List<string> errors, bool requirePeerId)
    {
        var result = new List<Multiaddress>();
        for (var i = 0; i < texts.Count; i++)
        {
            if (!Multiaddress.TryParse(texts[i], out var address) || address is null)
            {
                errors.Add($"{path}[{i}]: '{texts[i]}' is not a valid multiaddr");
                continue;
            }

            if (requirePeerId && address.PeerId is null)
            {
                errors.Add($"{path}[{i}]: '{texts[i]}' does not end in /p2p/<PeerId>");
                continue;
            }

            result.Add(address);
        }

        return result;
    }

    private static string? ResolveDataDirectory(WorkerRole role, string? configured, List<string> errors)
    {
        if (configured is not null && string.IsNullOrWhiteSpace(configured))
        {
            errors.Add("Node:DataDir must not be blank");
            return null;
        }

        try
        {
            return Path.GetFullPath(configured ?? Path.Combine("data", WorkerRoles.NameOf(role)));
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            errors.Add($"Node:DataDir: '{configured}' is not a usable path ({e.Message})");
            return null;
        }
    }

    private static void ValidateNode(NodeSettings node, List<string> errors)
    {
        if (node.Listen.Count == 0) errors.Add("Node:Listen must list at least one address, e.g. /ip4/127.0.0.1/tcp/0");
        var tcp = new TcpTransport();
        for (var i = 0; i < node.Listen.Count; i++)
        {
            if (Multiaddress.TryParse(node.Listen[i], out var address) && address is not null && !tcp.CanListen(address))
                errors.Add($"Node:Listen[{i}]: '{node.Listen[i]}' is not a TCP address to listen on (e.g. /ip4/127.0.0.1/tcp/4001)");
        }

        if (node.DrainTimeout < TimeSpan.Zero || node.DrainTimeout > TimeSpan.FromHours(1))
            errors.Add($"Node:DrainTimeout must be between 0 and 1 hour; it is {node.DrainTimeout}");
    }

    private static void ValidateDht(DhtSettings dht, List<string> errors)
    {
        if (string.IsNullOrWhiteSpace(dht.ProtocolId) || dht.ProtocolId[0] != '/' || dht.ProtocolId.Any(char.IsWhiteSpace) || dht.ProtocolId.Length > 256)
            errors.Add($"Dht:ProtocolId: '{dht.ProtocolId}' is not a protocol id (e.g. /p2pinference/kad/1.0.0 or /ipfs/kad/1.0.0)");
        Timer("Dht:ProviderRecordTtl", dht.ProviderRecordTtl, errors);
        Timer("Dht:QueryTimeout", dht.QueryTimeout, errors);
        Timer("Dht:LookupTimeout", dht.LookupTimeout, errors);
        Timer("Dht:RefreshInterval", dht.RefreshInterval, errors);
    }

    private static void ValidateRpc(RpcSettings rpc, List<string> errors)
    {
        if (rpc.MaxMessageSize is < 1 or > 1 << 30) errors.Add($"Rpc:MaxMessageSize must be between 1 and {1 << 30} bytes; it is {rpc.MaxMessageSize}");
        if (rpc.MaxConcurrentCallsPerPeer < 1) errors.Add($"Rpc:MaxConcurrentCallsPerPeer must be at least 1; it is {rpc.MaxConcurrentCallsPerPeer}");
        if (rpc.MaxInFlightBytesPerPeer < rpc.MaxMessageSize)
            errors.Add($"Rpc:MaxInFlightBytesPerPeer must be at least Rpc:MaxMessageSize ({rpc.MaxMessageSize}); it is {rpc.MaxInFlightBytesPerPeer}");
        if (rpc.DefaultTimeout is { } timeout) Timer("Rpc:DefaultTimeout", timeout, errors);
        Timer("Rpc:RequestReadTimeout", rpc.RequestReadTimeout, errors);
        if (rpc.TopicCacheTtl < TimeSpan.Zero) errors.Add($"Rpc:TopicCacheTtl must not be negative; it is {rpc.TopicCacheTtl}");
        if (rpc.MaxTopicAttempts < 1) errors.Add($"Rpc:MaxTopicAttempts must be at least 1; it is {rpc.MaxTopicAttempts}");
        if (rpc.DirectConnectionWait < TimeSpan.Zero || rpc.DirectConnectionWait > TimeSpan.FromMinutes(1))
            errors.Add($"Rpc:DirectConnectionWait must be between 0 and 1 minute; it is {rpc.DirectConnectionWait}");
    }

    /// <summary>
    /// AuthOptions.Validate and GatewayOptions.Validate stop at their first complaint; to report
    /// every mistake, each configured setting is also checked alone on top of the defaults, then
    /// all together for the rules that relate settings to each other.
    /// </summary>
    private static void ValidateEachSetting<T>(IConfigurationSection section, T options, Action<T> validate, List<string> errors)
        where T : new()
    {
        if (TryValidate(options, validate) is not { } firstComplaint) return;
        var found = new List<string>();
        foreach (var property in ConfigurationBinding.Settings(typeof(T)))
        {
            if (!section.GetSection(property.Name).Exists()) continue;
            var probe = new T();
            property.SetValue(probe, property.GetValue(options));
            if (TryValidate(probe, validate) is { } complaint && !found.Contains(complaint)) found.Add(complaint);
        }

        if (!found.Contains(firstComplaint)) found.Add(firstComplaint);
        errors.AddRange(found.Select(m => m.TrimEnd('.')));
    }

    private static string? TryValidate<T>(T options, Action<T> validate)
    {
        try
        {
            validate(options);
            return null;
        }
        catch (ArgumentException e)
        {
            return e.Message;
        }
    }

    private static void ValidateHost(HostSettings host, List<string> errors)
    {
        if (host.MaxInboundConnections < 1) errors.Add($"Host:MaxInboundConnections must be at least 1; it is {host.MaxInboundConnections}");
        if (host.MaxInboundConnectionsPerAddress < 1)
            errors.Add($"Host:MaxInboundConnectionsPerAddress must be at least 1; it is {host.MaxInboundConnectionsPerAddress}");
        if (host.InboundConnectionsReservedForNewAddresses < 0)
            errors.Add($"Host:InboundConnectionsReservedForNewAddresses must not be negative; it is {host.InboundConnectionsReservedForNewAddresses}");
        if (host.InboundConnectionsReservedForTrustedPeers < 0)
            errors.Add($"Host:InboundConnectionsReservedForTrustedPeers must not be negative; it is {host.InboundConnectionsReservedForTrustedPeers}");
        if (host.MaxConnectionsPerPeer < 1) errors.Add($"Host:MaxConnectionsPerPeer must be at least 1; it is {host.MaxConnectionsPerPeer}");
        if (host.MaxKnownPeers < 1) errors.Add($"Host:MaxKnownPeers must be at least 1; it is {host.MaxKnownPeers}");
        Timer("Host:UpgradeTimeout", host.UpgradeTimeout, errors);
        Timer("Host:StreamNegotiationTimeout", host.StreamNegotiationTimeout, errors);
        Timer("Host:IdentifyTimeout", host.IdentifyTimeout, errors);
        Timer("Host:PingTimeout", host.PingTimeout, errors);
        Positive("Host:IdleConnectionTimeout", host.IdleConnectionTimeout, errors);
        if (host.ProxyProtocol && host.InboundPeersArePublic)
        {
            errors.Add("Host:ProxyProtocol and Host:InboundPeersArePublic cannot both be set: the PROXY protocol gives each peer its own address, "
                + "InboundPeersArePublic is for a proxy that hides it; set only ProxyProtocol");
        }

        for (var i = 0; i < host.ProxyProtocolSources.Count; i++)
        {
            if (!HostSettings.TryParseSource(host.ProxyProtocolSources[i], out _))
                errors.Add($"Host:ProxyProtocolSources[{i}]: '{host.ProxyProtocolSources[i]}' is not an address or a CIDR range such as 10.0.4.0/24 "
                    + "(an IPv4 address written as its four decimal parts; a range's address with no bits set past its prefix length)");
        }

        for (var i = 0; i < host.AnnounceAddresses.Count; i++)
        {
            var text = host.AnnounceAddresses[i];
            if (!Multiaddress.TryParse(text, out var address) || address is null)
                errors.Add($"Host:AnnounceAddresses[{i}]: '{text}' is not a valid multiaddr");
            else if (HostOptions.AnnounceAddressProblem(address) is { } problem)
                errors.Add($"Host:AnnounceAddresses[{i}]: '{text}' {problem}");
        }

        if (host.ProxyProtocolSources.Count > 0 && !host.ProxyProtocol)
            errors.Add("Host:ProxyProtocolSources names load balancers, but Host:ProxyProtocol is not set; set it too, or remove the list");
    }

    private static void ValidateNat(NatSettings nat, List<string> errors)
    {
        if (nat.MaxReservations is < 0 or > 16) errors.Add($"Nat:MaxReservations must be between 0 and 16; it is {nat.MaxReservations}");
        Timer("Nat:UnknownReachabilityGrace", nat.UnknownReachabilityGrace, errors, allowZero: true);
        Timer("Nat:RelaySearchInterval", nat.RelaySearchInterval, errors);
    }

    private static void Positive(string path, TimeSpan value, List<string> errors)
    {
        if (value <= TimeSpan.Zero) errors.Add($"{path} must be positive; it is {value}");
    }

    /// <summary>A duration that ends up in a timer, CancellationTokenSource or Task.Delay: positive (or zero) and at most <see cref="DurationLimits.MaxTimer"/>.</summary>
    private static void Timer(string path, TimeSpan value, List<string> errors, bool allowZero = false)
    {
        if (DurationLimits.CheckTimer(path, value, allowZero) is { } complaint) errors.Add(complaint);
    }
}
