using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Protocols.AutoNat;

/// <summary>How an <see cref="AutoNatClient"/> asks and concludes.</summary>
public sealed record AutoNatClientOptions
{
    /// <summary>Connected AutoNAT servers asked per round, chosen at random.</summary>
    public int PeersPerRound { get; init; } = 4;

    /// <summary>
    /// Answers in a row that it takes to reach or change a conclusion. The spec asks for more than
    /// three; three keeps a node with exactly three servers able to conclude in one round.
    /// </summary>
    public int ConfidenceThreshold { get; init; } = 3;

    /// <summary>Wait before the first round after <see cref="AutoNatClient.Start"/>, so identify has told us the peers' protocols and our observed addresses.</summary>
    public TimeSpan InitialDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Time between rounds while the status is unknown.</summary>
    public TimeSpan RetryInterval { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Time between rounds once the status is known; addresses and NATs change.</summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromMinutes(15);

    /// <summary>Bounds one request, from opening the stream to the answer: longer than a server's dial-back timeout (15 s by default, as go-libp2p's).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Addresses sent per request; servers try only a few anyway.</summary>
    public int MaxAddressesPerRequest { get; init; } = 8;

    /// <summary>
    /// While the node is public, tell peers the addresses servers reached it at that are not its listen addresses
    /// (<see cref="Host.P2PHost.SetConfirmedAddresses"/>): the NAT's mapping of a listen port, a public IP in front
    /// of a private one. An address counts once <see cref="ServersToConfirmAddress"/> different servers reached it.
    /// </summary>
    public bool AnnounceConfirmedAddresses { get; init; } = true;

    /// <summary>Different servers that must reach an address before it is announced: one could name any address we asked about.</summary>
    public int ServersToConfirmAddress { get; init; } = 2;

    /// <summary>Picks the servers of each round; the host's source when null.</summary>
    public IRandomSource? RandomSource { get; init; }

    public ILoggerFactory LoggerFactory { get; init; } = NullLoggerFactory.Instance;
}
