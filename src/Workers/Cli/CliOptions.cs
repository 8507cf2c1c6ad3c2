using System.CommandLine;
using P2PInference.Facilities.Addressing;

namespace P2PInference.Workers.Cli;

/// <summary>Options shared by several commands, defined once.</summary>
internal static class CliOptions
{
    /// <summary>For <c>node</c>, <c>ping</c> and <c>identify</c>: DCUtR may exchange and dial loopback and private addresses.</summary>
    public static Option<bool> HolePunchAllowPrivate() => new("--hole-punch-allow-private")
    {
        Description = "Exchange and dial loopback and private addresses when hole punching (tests on one machine or one LAN)",
    };

    public static Option<bool> Json() => new("--json") { Description = "Print machine-readable JSON instead of text" };

    public static Option<string?> KeyFile() => new("--key-file")
    {
        Description = "Ed25519 key file (libp2p protobuf); created if missing, so the node keeps its PeerId",
    };

    public static Option<double> TimeoutSeconds(double defaultSeconds) => new("--timeout")
    {
        Description = "Give up after this many seconds",
        DefaultValueFactory = _ => defaultSeconds,
    };

    public static Argument<string> TargetAddress() => new("multiaddr")
    {
        Description = "Full address of the peer, e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…",
    };

    /// <summary>Parses a multiaddr the user typed, with a message that says which one was wrong.</summary>
    public static Multiaddress ParseAddress(string text)
    {
        try
        {
            return Multiaddress.Parse(text);
        }
        catch (FormatException e)
        {
            throw new FormatException($"'{text}' is not a valid multiaddr: {e.Message}", e);
        }
    }
}
