using System.Net;
using P2PInference.Facilities.Dht;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Transport;
using P2PInference.Workers.Auth;
using P2PInference.Workers.Hosting;

namespace P2PInference.Tests.Unit.Hosting;

/// <summary>Where settings come from, which wins, and how every mistake is reported.</summary>
public sealed class WorkerConfigurationTests
{
    private const string Peer = "12D3KooWHQ2gGvzNgW8dGVKSDP2zEzh54DqynBNKMJWEbri6XhHR";
    private static readonly IReadOnlyDictionary<string, string?> NoEnvironment = new Dictionary<string, string?>();

    private string _dir = null!;

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "p2pinference-config-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void Load_GivesTheDefaults_WhenNothingIsConfigured()
    {
        var settings = WorkerConfiguration.Load("auth", Sources());

        Assert.That(settings.Role, Is.EqualTo(WorkerRole.Auth));
        Assert.That(settings.Node.Listen, Is.EqualTo(new[] { "/ip4/127.0.0.1/tcp/0" }));
        Assert.That(settings.BootstrapPeers, Is.Empty);
        Assert.That(settings.Node.DrainTimeout, Is.EqualTo(TimeSpan.FromSeconds(10)));
        Assert.That(settings.Dht.ProtocolId, Is.EqualTo(KademliaDhtOptions.DefaultProtocolId));
        Assert.That(settings.Auth.PasswordIterations, Is.EqualTo(AuthOptions.DefaultPasswordIterations));
        Assert.That(settings.DataDirectory, Is.EqualTo(Path.GetFullPath(Path.Combine("data", "auth"))));
    }

    [Test]
    public void Load_LetsEachLayerOverrideTheOneBelow_DefaultsFileEnvironmentCommandLine()
    {
        var file = Write("worker.json", """
            { "Node": { "DataDir": "from-file", "DrainTimeout": "00:00:03" },
              "Auth": { "PasswordIterations": 5000, "MinPasswordLength": 10 },
              "Rpc": { "MaxTopicAttempts": 5 } }
            """);
        var environment = new Dictionary<string, string?>
        {
            ["P2PINFERENCE_NODE__DATADIR"] = "from-env",
            ["P2PINFERENCE_AUTH__PASSWORDITERATIONS"] = "6000",
            ["OTHER_AUTH__MINPASSWORDLENGTH"] = "99",
        };

        var settings = WorkerConfiguration.Load("auth", Sources(file, environment) with { DataDir = Path.Combine(_dir, "from-cli") });

        Assert.That(settings.DataDirectory, Is.EqualTo(Path.Combine(_dir, "from-cli")), "command line beats environment");
        Assert.That(settings.Auth.PasswordIterations, Is.EqualTo(6000), "environment beats file");
        Assert.That(settings.Auth.MinPasswordLength, Is.EqualTo(10), "file beats defaults; other prefixes are ignored");
        Assert.That(settings.Node.DrainTimeout, Is.EqualTo(TimeSpan.FromSeconds(3)));
        Assert.That(settings.Rpc.MaxTopicAttempts, Is.EqualTo(5));
        Assert.That(settings.Auth.TokenLifetime, Is.EqualTo(TimeSpan.FromDays(1)), "untouched settings keep their defaults");
    }

    [Test]
    public void Load_ReadsTheEnvironmentFile_AndTheConfigFileOverridesIt()
    {
        Write("appsettings.Staging.json", """{ "Auth": { "PasswordIterations": 2000, "MinPasswordLength": 9 } }""");
        var file = Write("worker.json", """{ "Auth": { "PasswordIterations": 3000 } }""");
        var environment = new Dictionary<string, string?> { [WorkerConfigurationSources.EnvironmentVariable] = "Staging" };

        var settings = WorkerConfiguration.Load("auth", Sources(file, environment));

        Assert.That(settings.Auth.PasswordIterations, Is.EqualTo(3000));
        Assert.That(settings.Auth.MinPasswordLength, Is.EqualTo(9));
    }

    [Test]
    public void Load_ReplacesConfiguredLists_WithCommandLineLists()
    {
        var file = Write("worker.json", """
            { "Node": { "Listen": [ "/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/tcp/4002" ],
                        "Bootstrap": [ "/ip4/127.0.0.1/tcp/5001/p2p/PEER" ] } }
            """.Replace("PEER", Peer, StringComparison.Ordinal));

        var settings = WorkerConfiguration.Load("gateway", Sources(file) with
        {
            Listen = ["/ip4/127.0.0.1/tcp/4009"],
            Bootstrap = [$"/ip4/127.0.0.1/tcp/6001/p2p/{Peer}", $"/ip4/127.0.0.1/tcp/6002/p2p/{Peer}"],
        });

        Assert.That(settings.ListenAddresses.Select(a => a.ToString()), Is.EqualTo(new[] { "/ip4/127.0.0.1/tcp/4009" }));
        Assert.That(settings.BootstrapPeers.Select(a => a.ToString()),
            Is.EqualTo(new[] { $"/ip4/127.0.0.1/tcp/6001/p2p/{Peer}", $"/ip4/127.0.0.1/tcp/6002/p2p/{Peer}" }));
    }

    [Test]
    public void Load_TakesACommaSeparatedListFromAnEnvironmentVariable()
    {
        var environment = new Dictionary<string, string?>
        {
            ["P2PINFERENCE_NODE__BOOTSTRAP"] = $"/ip4/127.0.0.1/tcp/1/p2p/{Peer}, /ip4/127.0.0.1/tcp/2/p2p/{Peer}",
        };

        var settings = WorkerConfiguration.Load("processor", Sources(environment: environment));

        Assert.That(settings.BootstrapPeers, Has.Count.EqualTo(2));
    }

    [Test]
    public void Load_ReportsEveryMistakeAtOnce_OneClearLineEach()
    {
        var file = Write("worker.json", """
            { "Node": { "Listen": [ "/ip4/1.2.3/tcp/0", "/ip4/127.0.0.1/udp/5" ], "Bootstrap": [ "/ip4/127.0.0.1/tcp/1" ], "DrainTimeout": "-00:00:01" },
              "Dht": { "Mode": "Sideways", "ProtocolId": "kad", "QueryTimeout": "00:00:00" },
              "Rpc": { "MaxMessageSize": "big", "MaxConcurrentCallsPerPeer": 0 },
              "Auth": { "TokenLifetime": "-00:05:00", "PasswordIterations": 10, "Issuer": "" } }
            """);

        var error = Assert.Throws<WorkerConfigurationException>(() => WorkerConfiguration.Load("auth", Sources(file)));

        Assert.That(error!.Errors, Is.EquivalentTo(new[]
        {
            "Node:Listen[0]: '/ip4/1.2.3/tcp/0' is not a valid multiaddr",
            "Node:Listen[1]: '/ip4/127.0.0.1/udp/5' is not a TCP address to listen on (e.g. /ip4/127.0.0.1/tcp/4001)",
            "Node:Bootstrap[0]: '/ip4/127.0.0.1/tcp/1' does not end in /p2p/<PeerId>",
            "Node:DrainTimeout must be between 0 and 1 hour; it is -00:00:01",
            "Dht:Mode: 'Sideways' is not one of Server, Client",
            "Dht:ProtocolId: 'kad' is not a protocol id (e.g. /p2pinference/kad/1.0.0 or /ipfs/kad/1.0.0)",
            "Dht:QueryTimeout must be positive; it is 00:00:00",
            "Rpc:MaxMessageSize: 'big' is not a whole number in range",
            "Rpc:MaxConcurrentCallsPerPeer must be at least 1; it is 0",
            "Auth:TokenLifetime must be between 1 minute and 30 days; it is -00:05:00",
            "Auth:PasswordIterations must be between 1000 and 10000000 (recommended 600000); it is 10",
            "Auth:Issuer must be 1 to 256 printable ASCII characters",
        }));
        Assert.That(error.Message, Does.StartWith("invalid configuration (12 mistakes):"));
        Assert.That(error.Message, Does.Contain("Rpc:MaxMessageSize: 'big'"));
    }

    [TestCase("Auth:TokenLifetime", "soon", "Auth:TokenLifetime: 'soon' is not a duration like 00:05:00 (hh:mm:ss) or 1.00:00:00 (d.hh:mm:ss)")]
    [TestCase("Auth:PasswordIterations", "99999999999", "Auth:PasswordIterations: '99999999999' is not a whole number in range")]
    [TestCase("Auth:DefaultQuota:Burst", "-1", "Auth:DefaultQuota:Burst: '-1' is not a non-negative whole number in range")]
    [TestCase("Node:LogLevel", "Loud", "Node:LogLevel: 'Loud' is not one of Trace, Debug, Information, Warning, Error, Critical, None")]
    [TestCase("Dht:Mode", "1", "Dht:Mode: '1' is not one of Server, Client")]
    [TestCase("Node:Lisen", "/ip4/127.0.0.1/tcp/0", "Node:Lisen is not a known setting (known: Bootstrap, DataDir, DrainTimeout, Listen, LogLevel)")]
    [TestCase("Nodes:Listen", "x", "Nodes is not a known section (known: Node, Host, Dht, Rpc, Nat, Auth, Gateway, Processor, Trust)")]
    [TestCase("Auth:LoginThrottle", "5", "Auth:LoginThrottle must be a section of settings, not the value '5'")]
    [TestCase("Node:DataDir", "  ", "Node:DataDir must not be blank")]
    [TestCase("Host:MaxInboundConnections", "0", "Host:MaxInboundConnections must be at least 1; it is 0")]
    [TestCase("Host:MaxKnownPeers", "-5", "Host:MaxKnownPeers must be at least 1; it is -5")]
    [TestCase("Host:InboundConnectionsReservedForTrustedPeers", "-1", "Host:InboundConnectionsReservedForTrustedPeers must not be negative; it is -1")]
    [TestCase("Host:IdentifyTimeout", "00:00:00", "Host:IdentifyTimeout must be positive; it is 00:00:00")]
    [TestCase("Host:PingTimeout", "later", "Host:PingTimeout: 'later' is not a duration like 00:05:00 (hh:mm:ss) or 1.00:00:00 (d.hh:mm:ss)")]
    public void Load_NamesTheSettingAndTheExpectedForm_WhenAValueIsWrong(string key, string value, string expected)
    {
        var error = Assert.Throws<WorkerConfigurationException>(() =>
            WorkerConfiguration.Load("auth", Sources() with { Overrides = new Dictionary<string, string?> { [key] = value } }));

        Assert.That(error!.Errors, Is.EqualTo(new[] { expected }));
    }

    [Test]
    public void Load_ReportsAValueGivenWhereASectionBelongs_AndTheReverse()
    {
        var file = Write("worker.json", """{ "Auth": { "Issuer": { "Name": "x" } }, "Node": { "Listen": { "a": "/ip4/127.0.0.1/tcp/0" } } }""");

        var error = Assert.Throws<WorkerConfigurationException>(() => WorkerConfiguration.Load("auth", Sources(file)));

        Assert.That(error!.Errors, Does.Contain("Auth:Issuer must be a single value, not a section"));
        Assert.That(error.Errors, Does.Contain("Node:Listen must be a list; 'a' is not an index"));
    }

    [Test]
    public void Load_ThrowsATypedError_WhenTheFileIsNotJson()
    {
        var file = Write("broken.json", """{ "Node": { "Listen": [ "/ip4/127.0.0.1/tcp/0" """);

        var error = Assert.Throws<WorkerConfigurationException>(() => WorkerConfiguration.Load("auth", Sources(file)));

        Assert.That(error!.Errors, Has.Count.EqualTo(1));
        Assert.That(error.Errors[0], Does.StartWith($"config file '{file}' is not valid JSON: "));
    }

    [Test]
    public void Load_ThrowsATypedError_WhenTheFileIsMissing()
    {
        var error = Assert.Throws<WorkerConfigurationException>(() => WorkerConfiguration.Load("auth", Sources(Path.Combine(_dir, "nope.json"))));

        Assert.That(error!.Errors, Is.EqualTo(new[] { $"config file '{Path.Combine(_dir, "nope.json")}' does not exist" }));
    }

    [TestCase("worker")]
    [TestCase("")]
    [TestCase("0")]
    public void Load_ThrowsATypedError_ForAnUnknownRole(string role)
    {
        var error = Assert.Throws<WorkerConfigurationException>(() => WorkerConfiguration.Load(role, Sources()));

        Assert.That(error!.Errors, Is.EqualTo(new[] { $"unknown role '{role}'; expected one of bootstrap, auth, gateway, processor" }));
    }

    [Test]
    public void Load_AcceptsRoleNamesInAnyCase() =>
        Assert.That(WorkerConfiguration.Load("Processor", Sources()).Role, Is.EqualTo(WorkerRole.Processor));

    [TestCase("bootstrap")]
    [TestCase("auth")]
    [TestCase("gateway")]
    [TestCase("processor")]
    public void SampleConfigs_AreValid(string role)
    {
        foreach (var folder in new[] { "configs", "test-configs" })
        {
            var settings = WorkerConfiguration.Load(role, Sources(Path.Combine(RepositoryRoot(), "fixtures", folder, role + ".json")));
            Assert.That(settings.Role, Is.EqualTo(WorkerRoles.Parse(role)));
        }
    }

    [Test]
    public void TestConfig_UsesCheapPasswordHashing() =>
        Assert.That(WorkerConfiguration.Load("auth", Sources(Path.Combine(RepositoryRoot(), "fixtures", "test-configs", "auth.json"))).Auth.PasswordIterations,
            Is.EqualTo(AuthOptions.MinPasswordIterations));

    [Test]
    public void ToRuntimeOptions_CarriesTheSettings()
    {
        var settings = WorkerConfiguration.Load("processor", Sources() with
        {
            DataDir = Path.Combine(_dir, "p"),
            Bootstrap = [$"/ip4/127.0.0.1/tcp/1/p2p/{Peer}"],
            Overrides = new Dictionary<string, string?>
            {
                ["Dht:Mode"] = "Client", ["Rpc:DefaultTimeout"] = "00:00:07", ["Node:DrainTimeout"] = "00:00:01",
                ["Host:MaxInboundConnections"] = "64", ["Host:IdentifyTimeout"] = "00:00:03", ["Host:InboundPeersArePublic"] = "true",
                ["Host:MaxKnownPeers"] = "5000",
            },
        });

        var options = settings.ToRuntimeOptions();

        Assert.That(options.Role, Is.EqualTo(WorkerRole.Processor));
        Assert.That(options.DataDirectory, Is.EqualTo(Path.Combine(_dir, "p")));
        Assert.That(options.BootstrapPeers.Single().PeerId!.ToString(), Is.EqualTo(Peer));
        Assert.That(options.DhtMode, Is.EqualTo(DhtMode.Client));
        Assert.That(options.Rpc.DefaultTimeout, Is.EqualTo(TimeSpan.FromSeconds(7)));
        Assert.That(options.DrainTimeout, Is.EqualTo(TimeSpan.FromSeconds(1)));
        Assert.That(options.Host.MaxInboundConnections, Is.EqualTo(64));
        Assert.That(options.Host.IdentifyTimeout, Is.EqualTo(TimeSpan.FromSeconds(3)));
        Assert.That(options.Host.InboundPeersArePublic, Is.True);
        Assert.That(options.Host.MaxKnownPeers, Is.EqualTo(5000));
        Assert.That(options.Host.MaxInboundConnectionsPerAddress, Is.EqualTo(32), "untouched limits keep the host's defaults");
    }

    [Test]
    public void ProxyProtocol_ReachesTheTcpTransport()
    {
        var settings = WorkerConfiguration.Load("processor", Sources() with { Overrides = new Dictionary<string, string?> { ["Host:ProxyProtocol"] = "true" } });

        var options = settings.ToRuntimeOptions();

        Assert.That(options.Host.ProxyProtocol, Is.True);
        Assert.That(options.TransportFactory(KeyPair.Generate()).OfType<TcpTransport>().Single().ProxyProtocol, Is.True);
        Assert.That(WorkerConfiguration.Load("processor", Sources()).ToRuntimeOptions().TransportFactory(KeyPair.Generate()).OfType<TcpTransport>().Single().ProxyProtocol,
            Is.False, "off by default");
    }

    [Test]
    public void ProxyProtocolSources_FromOneCommaSeparatedValue_ReachTheTcpTransport()
    {
        var settings = WorkerConfiguration.Load("processor", Sources() with
        {
            EnvironmentVariables = new Dictionary<string, string?>
            {
                ["P2PINFERENCE_HOST__PROXYPROTOCOL"] = "true",
                ["P2PINFERENCE_HOST__PROXYPROTOCOLSOURCES"] = "10.0.4.0/24, 192.0.2.10,fd00::/64",
            },
        });

        var tcp = settings.ToRuntimeOptions().TransportFactory(KeyPair.Generate()).OfType<TcpTransport>().Single();

        Assert.That(tcp.ExpectsProxyHeaderFrom(IPAddress.Parse("10.0.4.200")), Is.True);
        Assert.That(tcp.ExpectsProxyHeaderFrom(IPAddress.Parse("192.0.2.10")), Is.True, "a bare address is a network of one");
        Assert.That(tcp.ExpectsProxyHeaderFrom(IPAddress.Parse("192.0.2.11")), Is.False);
        Assert.That(tcp.ExpectsProxyHeaderFrom(IPAddress.Parse("fd00::1")), Is.True);
        Assert.That(tcp.ExpectsProxyHeaderFrom(IPAddress.Parse("203.0.113.7")), Is.False, "a peer dialing the node directly sends no header");
    }

    [Test]
    public void AnnounceAddresses_FromOneCommaSeparatedValue_ReachTheHostSettings()
    {
        var settings = WorkerConfiguration.Load("processor", Sources() with
        {
            EnvironmentVariables = new Dictionary<string, string?>
            {
                ["P2PINFERENCE_HOST__ANNOUNCEADDRESSES"] = "/dns4/node.example.com/tcp/4001, /ip4/203.0.113.7/tcp/4001",
            },
        });

        Assert.That(settings.ToRuntimeOptions().Host.AnnounceMultiaddresses().Select(a => a.ToString()),
            Is.EqualTo(new[] { "/dns4/node.example.com/tcp/4001", "/ip4/203.0.113.7/tcp/4001" }));
        Assert.That(WorkerConfiguration.Load("processor", Sources()).Host.AnnounceAddresses, Is.Empty, "none by default");
    }

    [Test]
    public void AnnounceAddresses_ThatPeersCannotDial_AreMistakes()
    {
        var error = Assert.Throws<WorkerConfigurationException>(() => WorkerConfiguration.Load("processor", Sources() with
        {
            Overrides = new Dictionary<string, string?>
            {
                ["Host:AnnounceAddresses:0"] = "/ip4/203.0.113.7/tcp",
                ["Host:AnnounceAddresses:1"] = $"/ip4/203.0.113.7/tcp/4001/p2p/{Peer}",
                ["Host:AnnounceAddresses:2"] = "/ip4/0.0.0.0/tcp/4001",
                ["Host:AnnounceAddresses:3"] = "/ip4/203.0.113.7/tcp/4001",
            },
        }));

        Assert.That(error!.Errors, Is.EqualTo(new[]
        {
            "Host:AnnounceAddresses[0]: '/ip4/203.0.113.7/tcp' is not a valid multiaddr",
            $"Host:AnnounceAddresses[1]: '/ip4/203.0.113.7/tcp/4001/p2p/{Peer}' ends in /p2p/; leave it out, the node's own id is added",
            "Host:AnnounceAddresses[2]: '/ip4/0.0.0.0/tcp/4001' is not an address peers can dial; name the address they reach this node at",
        }));
    }

    [Test]
    public void ProxyProtocolSources_ThatDoNotParse_OrWithoutTheProxyProtocol_AreMistakes()
    {
        var error = Assert.Throws<WorkerConfigurationException>(() => WorkerConfiguration.Load("processor", Sources() with
        {
            Overrides = new Dictionary<string, string?>
            {
                ["Host:ProxyProtocolSources:0"] = "10.0.4.9/24",
                ["Host:ProxyProtocolSources:1"] = "balancer.internal",
                ["Host:ProxyProtocolSources:2"] = "10.0.4.0/24",
                // .NET reads these as 10.0.0.4, 0.0.0.10, 8.0.0.1 and 10.0.0.0/24: a typo must not name another network.
                ["Host:ProxyProtocolSources:3"] = "10.0.4",
                ["Host:ProxyProtocolSources:4"] = "10",
                ["Host:ProxyProtocolSources:5"] = "010.0.0.1",
                ["Host:ProxyProtocolSources:6"] = "10.0/24",
            },
        }));

        const string Hint = "(an IPv4 address written as its four decimal parts; a range's address with no bits set past its prefix length)";
        Assert.That(error!.Errors, Is.EqualTo(new[]
        {
            $"Host:ProxyProtocolSources[0]: '10.0.4.9/24' is not an address or a CIDR range such as 10.0.4.0/24 {Hint}",
            $"Host:ProxyProtocolSources[1]: 'balancer.internal' is not an address or a CIDR range such as 10.0.4.0/24 {Hint}",
            $"Host:ProxyProtocolSources[3]: '10.0.4' is not an address or a CIDR range such as 10.0.4.0/24 {Hint}",
            $"Host:ProxyProtocolSources[4]: '10' is not an address or a CIDR range such as 10.0.4.0/24 {Hint}",
            $"Host:ProxyProtocolSources[5]: '010.0.0.1' is not an address or a CIDR range such as 10.0.4.0/24 {Hint}",
            $"Host:ProxyProtocolSources[6]: '10.0/24' is not an address or a CIDR range such as 10.0.4.0/24 {Hint}",
            "Host:ProxyProtocolSources names load balancers, but Host:ProxyProtocol is not set; set it too, or remove the list",
        }));
    }

    [Test]
    public void ProxyProtocol_WithTransportsThatDoNotExpectIt_StopsTheNodeFromStarting()
    {
        var facilities = new Libp2pWorkerFacilities(new WorkerRuntimeOptions
        {
            Role = WorkerRole.Processor,
            DataDirectory = Path.Combine(_dir, "p"),
            Host = new HostSettings { ProxyProtocol = true },
            TransportFactory = _ => [new TcpTransport()],
        });

        var error = Assert.ThrowsAsync<InvalidOperationException>(() => facilities.StartNetworkAsync(KeyPair.Generate(), CancellationToken.None));

        Assert.That(error!.Message, Does.Contain("no TCP transport of this node expects the PROXY protocol"));
    }

    [Test]
    public void ProxyProtocol_WithInboundPeersArePublic_IsAMistake()
    {
        var error = Assert.Throws<WorkerConfigurationException>(() => WorkerConfiguration.Load("auth", Sources() with
        {
            Overrides = new Dictionary<string, string?> { ["Host:ProxyProtocol"] = "true", ["Host:InboundPeersArePublic"] = "true" },
        }));

        Assert.That(error!.Errors, Is.EqualTo(new[]
        {
            "Host:ProxyProtocol and Host:InboundPeersArePublic cannot both be set: the PROXY protocol gives each peer its own address, "
                + "InboundPeersArePublic is for a proxy that hides it; set only ProxyProtocol",
        }));
    }

    [Test]
    public void Load_NatSection_DefaultsToAutoNatOn_RelayServiceOff_DiscoveryOn_TwoReservations()
    {
        var settings = WorkerConfiguration.Load("processor", Sources());
        var runtime = settings.ToRuntimeOptions();

        Assert.Multiple(() =>
        {
            Assert.That(settings.Nat.AutoNat, Is.True);
            Assert.That(settings.Nat.RelayService, Is.False);
            Assert.That(settings.Nat.DiscoverRelays, Is.True);
            Assert.That(settings.Nat.MaxReservations, Is.EqualTo(2));
            Assert.That(settings.RelayAddresses, Is.Empty);
            Assert.That(settings.Rpc.DirectConnectionWait, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(runtime.Rpc.DirectConnectionWait, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(runtime.Rpc.BulkMethods, Does.Contain("processor.infer").And.Contain("processor.inferStream"));
            Assert.That(runtime.Rpc.BulkMethods, Does.Not.Contain("auth.validate"));
        });
    }

    [Test]
    public void Load_NatSection_TakesRelaysAndRelayService_FromFileAndEnvironment()
    {
        var file = Write("worker.json", $$"""
            { "Nat": { "RelayService": true, "Relays": [ "/ip4/198.51.100.7/tcp/4001/p2p/{{Peer}}" ], "MaxReservations": 3 } }
            """);
        var environment = new Dictionary<string, string?> { ["P2PINFERENCE_NAT__AUTONAT"] = "false", ["P2PINFERENCE_RPC__DIRECTCONNECTIONWAIT"] = "00:00:02" };

        var settings = WorkerConfiguration.Load("gateway", Sources(file, environment));
        var runtime = settings.ToRuntimeOptions();

        Assert.Multiple(() =>
        {
            Assert.That(settings.Nat.RelayService, Is.True);
            Assert.That(settings.Nat.AutoNat, Is.False);
            Assert.That(settings.Nat.MaxReservations, Is.EqualTo(3));
            Assert.That(runtime.RelayAddresses.Select(a => a.ToString()), Is.EqualTo(new[] { $"/ip4/198.51.100.7/tcp/4001/p2p/{Peer}" }));
            Assert.That(runtime.Nat.RelayService, Is.True);
            Assert.That(runtime.Rpc.DirectConnectionWait, Is.EqualTo(TimeSpan.FromSeconds(2)));
        });
    }

    [Test]
    public void Load_NatSection_ReportsEveryMistake_NamingTheSetting()
    {
        var file = Write("worker.json", """
            { "Nat": { "AutoNat": "sometimes", "Relays": [ "/ip4/198.51.100.7/tcp/4001", "relay.example" ], "MaxReservations": -1,
                       "RelaySearchInterval": "00:00:00", "UnknownReachabilityGrace": "-00:00:01", "Relayz": true },
              "Rpc": { "DirectConnectionWait": "01:00:00" } }
            """);

        var error = Assert.Throws<WorkerConfigurationException>(() => WorkerConfiguration.Load("processor", Sources(file)));

        Assert.That(error!.Errors, Has.Some.StartWith("Nat:AutoNat: 'sometimes'"));
        Assert.That(error.Errors, Has.Some.StartWith("Nat:Relayz is not a known setting"));
        Assert.That(error.Errors, Does.Contain("Nat:Relays[0]: '/ip4/198.51.100.7/tcp/4001' does not end in /p2p/<PeerId>"));
        Assert.That(error.Errors, Does.Contain("Nat:Relays[1]: 'relay.example' is not a valid multiaddr"));
        Assert.That(error.Errors, Does.Contain("Nat:MaxReservations must be between 0 and 16; it is -1"));
        Assert.That(error.Errors, Does.Contain("Nat:RelaySearchInterval must be positive; it is 00:00:00"));
        Assert.That(error.Errors, Does.Contain("Nat:UnknownReachabilityGrace must not be negative; it is -00:00:01"));
        Assert.That(error.Errors, Does.Contain("Rpc:DirectConnectionWait must be between 0 and 1 minute; it is 01:00:00"));
    }

    [Test]
    public void Load_RefusesABareNumberForADuration_NamingTheSetting_InJsonNumberStringAndEnvironmentForms()
    {
        // TimeSpan.Parse would read each as days: 30 days for a revocation list meant to be reread every 30 seconds.
        var file = Write("worker.json", """{ "Trust": { "CachePeriod": 30 }, "Host": { "UpgradeTimeout": "45" } }""");
        var environment = new Dictionary<string, string?> { ["P2PINFERENCE_AUTH__TOKENLIFETIME"] = "2" };

        var error = Assert.Throws<WorkerConfigurationException>(() => WorkerConfiguration.Load("auth", Sources(file, environment)));

        const string Accepted = "write a duration like 00:05:00 (hh:mm:ss) or 1.00:00:00 (d.hh:mm:ss), e.g. 00:00:30 for 30 seconds";
        Assert.That(error!.Errors, Is.EquivalentTo(new[]
        {
            "Trust:CachePeriod: '30' is a bare number, which is ambiguous (it would be read as days); " + Accepted,
            "Host:UpgradeTimeout: '45' is a bare number, which is ambiguous (it would be read as days); " + Accepted,
            "Auth:TokenLifetime: '2' is a bare number, which is ambiguous (it would be read as days); " + Accepted,
        }));
    }

    [TestCase("Host:UpgradeTimeout")]
    [TestCase("Host:IdentifyTimeout")]
    [TestCase("Host:StreamNegotiationTimeout")]
    [TestCase("Host:PingTimeout")]
    [TestCase("Trust:CachePeriod")]
    [TestCase("Dht:QueryTimeout")]
    [TestCase("Dht:LookupTimeout")]
    [TestCase("Dht:RefreshInterval")]
    [TestCase("Dht:ProviderRecordTtl")]
    [TestCase("Rpc:DefaultTimeout")]
    [TestCase("Rpc:RequestReadTimeout")]
    [TestCase("Nat:RelaySearchInterval")]
    [TestCase("Nat:UnknownReachabilityGrace")]
    public void Load_RefusesATimerDurationOverTheTimerMaximum_NamingTheSettingAndTheMaximum(string key)
    {
        var error = Assert.Throws<WorkerConfigurationException>(() =>
            WorkerConfiguration.Load("processor", Sources() with { Overrides = new Dictionary<string, string?> { [key] = "50.00:00:00" } }));

        Assert.That(error!.Errors, Is.EqualTo(new[]
        {
            $"{key} must be at most 49.17:02:47.2940000 (about 49.7 days, the longest a timer accepts); it is 50.00:00:00",
        }));
    }

    [TestCase("Processor:Engine:TokenInterval", "builtin")]
    [TestCase("Processor:Engine:Timeout", "openai")]
    public void Load_RefusesAnEngineDurationOverTheTimerMaximum(string key, string kind)
    {
        var overrides = new Dictionary<string, string?> { ["Processor:Engine:Kind"] = kind, [key] = "50.00:00:00" };
        if (kind == "openai") overrides["Processor:Engine:BaseUrl"] = "http://127.0.0.1:1/v1";

        var error = Assert.Throws<WorkerConfigurationException>(() => WorkerConfiguration.Load("processor", Sources() with { Overrides = overrides }));

        var name = key["Processor:".Length..];
        Assert.That(error!.Errors, Has.Some.StartWith($"{name} must be at most 49.17:02:47.2940000"));
    }

    [Test]
    public void Load_AcceptsATimerDurationAtTheMaximum_WhichATimerAccepts()
    {
        var settings = WorkerConfiguration.Load("auth", Sources() with { Overrides = new Dictionary<string, string?> { ["Trust:CachePeriod"] = "49.17:02:47.294" } });

        Assert.That(settings.Trust.CachePeriod, Is.EqualTo(DurationLimits.MaxTimer));
        Assert.DoesNotThrow(() => new CancellationTokenSource(settings.Trust.CachePeriod).Dispose());
        Assert.Throws<ArgumentOutOfRangeException>(() => new CancellationTokenSource(DurationLimits.MaxTimer + TimeSpan.FromMilliseconds(1)));
    }

    [Test]
    public void Load_IgnoresTheClientsApiKeyVariable_ButStillRefusesAnUnknownSection()
    {
        var environment = new Dictionary<string, string?> { ["P2PINFERENCE_API_KEY"] = "p2pk_example", ["P2PINFERENCE_ENVIRONMENT"] = "Nowhere" };

        Assert.DoesNotThrow(() => WorkerConfiguration.Load("gateway", Sources(environment: environment)));

        environment["P2PINFERENCE_API_KEYS"] = "x";
        var error = Assert.Throws<WorkerConfigurationException>(() => WorkerConfiguration.Load("gateway", Sources(environment: environment)));
        Assert.That(error!.Errors, Is.EqualTo(new[] { "API_KEYS is not a known section (known: Node, Host, Dht, Rpc, Nat, Auth, Gateway, Processor, Trust)" }));
    }

    private WorkerConfigurationSources Sources(string? file = null, IReadOnlyDictionary<string, string?>? environment = null) => new()
    {
        ConfigPath = file,
        BaseDirectory = _dir,
        EnvironmentVariables = environment ?? NoEnvironment,
    };

    private string Write(string name, string json)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, json);
        return path;
    }

    internal static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "P2PInference.sln"))) return dir.FullName;
        }

        throw new InvalidOperationException("P2PInference.sln not found above the test directory");
    }
}
