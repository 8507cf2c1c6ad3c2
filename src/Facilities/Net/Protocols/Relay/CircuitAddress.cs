using System.Diagnostics.CodeAnalysis;
using P2PInference.Facilities.Addressing;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Protocols.Relay;

/// <summary>
/// A circuit address split in its parts: <c>&lt;relay address&gt;/p2p/RELAY/p2p-circuit[/p2p/TARGET]</c>.
/// The relay part must name the relay's peer id, since the relay is dialled as that peer.
/// </summary>
public sealed record CircuitAddress(Multiaddress RelayAddress, PeerId Relay, PeerId? Target)
{
    private static readonly Multiaddress CircuitSuffix = Multiaddress.Parse("/p2p-circuit");

    /// <summary>The relay's address with its <c>/p2p/RELAY</c> (as dialled), without <c>/p2p-circuit</c>.</summary>
    public Multiaddress RelayAddress { get; } = RelayAddress;

    /// <summary><c>…/p2p/RELAY/p2p-circuit</c>: where a peer with a reservation on the relay is listening.</summary>
    public Multiaddress ListenAddress => RelayAddress.Encapsulate(CircuitSuffix);

    /// <summary><c>…/p2p/RELAY/p2p-circuit/p2p/TARGET</c>.</summary>
    public static Multiaddress For(Multiaddress relayAddress, PeerId relay, PeerId target) =>
        relayAddress.WithPeerId(relay).Encapsulate(CircuitSuffix).WithPeerId(target);

    public static bool IsCircuit(Multiaddress address) => address is not null && address.Has(MultiaddressProtocol.P2pCircuit);

    /// <summary>
    /// Splits <paramref name="address"/>; false unless it has exactly one <c>/p2p-circuit</c>, a relay
    /// part ending in <c>/p2p/RELAY</c> (with something to dial before it), and after the circuit
    /// nothing or one <c>/p2p/TARGET</c>.
    /// </summary>
    public static bool TryParse(Multiaddress? address, [NotNullWhen(true)] out CircuitAddress? circuit)
    {
        circuit = null;
        if (address is null) return false;
        var components = address.Components;
        var at = -1;
        for (var i = 0; i < components.Count; i++)
        {
            if (components[i].Protocol.Code != MultiaddressProtocol.P2pCircuit.Code) continue;
            if (at >= 0) return false;
            at = i;
        }
        if (at < 2) return false;
        if (components[at - 1].Protocol.Code != MultiaddressProtocol.P2p.Code) return false;
        PeerId? target = null;
        var after = components.Count - at - 1;
        if (after > 1) return false;
        try
        {
            if (after == 1)
            {
                if (components[^1].Protocol.Code != MultiaddressProtocol.P2p.Code) return false;
                target = PeerId.FromBytes(components[^1].Value.Span);
            }
            var relayAddress = address.Decapsulate(MultiaddressProtocol.P2pCircuit);
            circuit = new CircuitAddress(relayAddress, relayAddress.PeerId!, target);
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }
}
