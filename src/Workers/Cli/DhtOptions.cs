using System.CommandLine;
using P2PInference.Facilities.Dht;

namespace P2PInference.Workers.Cli;

/// <summary>The DHT options <c>node</c> and <c>dht find</c> share.</summary>
internal sealed class DhtOptions
{
    public Option<string[]> Bootstrap { get; } = new("--bootstrap")
    {
        Description = "Bootstrap peer, a full multiaddr ending in /p2p/<PeerId> (repeatable)",
    };

    public Option<string> Protocol { get; } = new("--dht-protocol")
    {
        Description = "Kademlia protocol id",
        DefaultValueFactory = _ => KademliaDhtOptions.DefaultProtocolId,
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Bootstrap);
        command.Options.Add(Protocol);
    }

    public KademliaDhtOptions Create(ParseResult result, DhtMode mode)
    {
        var bootstrap = (result.GetValue(Bootstrap) ?? []).Select(CliOptions.ParseAddress).ToArray();
        foreach (var address in bootstrap)
            if (address.PeerId is null)
                throw new FormatException($"bootstrap address '{address}' does not end in /p2p/<PeerId>");
        var protocol = result.GetValue(Protocol)!;
        if (!protocol.StartsWith('/')) throw new FormatException($"DHT protocol id '{protocol}' must start with '/'");
        return new KademliaDhtOptions { ProtocolId = protocol, Mode = mode, BootstrapPeers = bootstrap };
    }
}
