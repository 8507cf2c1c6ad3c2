namespace P2PInference.TestKit.Network.Nat;

/// <summary>
/// The mapping and filtering behaviour of a <see cref="NatRouter"/>, in RFC 4787's terms, with the
/// classic cone/symmetric names as presets.
/// </summary>
public sealed record NatBehavior(NatMappingBehavior Mapping, NatFilteringBehavior Filtering)
{
    /// <summary>
    /// RFC 5382 asks at least 4 minutes for a TCP mapping in a transitory state (no established
    /// connection); established connections keep their mapping for as long as they are open here.
    /// </summary>
    public static readonly TimeSpan DefaultMappingTimeout = TimeSpan.FromMinutes(4);

    /// <summary>EIM and EIF: once a node has dialed out, anyone reaches it at its mapping.</summary>
    public static NatBehavior FullCone => new(NatMappingBehavior.EndpointIndependent, NatFilteringBehavior.EndpointIndependent);

    /// <summary>EIM and address-dependent filtering.</summary>
    public static NatBehavior RestrictedCone => new(NatMappingBehavior.EndpointIndependent, NatFilteringBehavior.AddressDependent);

    /// <summary>EIM and address-and-port-dependent filtering: the common home router; hole punching works.</summary>
    public static NatBehavior PortRestrictedCone => new(NatMappingBehavior.EndpointIndependent, NatFilteringBehavior.AddressAndPortDependent);

    /// <summary>Address-and-port-dependent mapping and filtering: a hole punch between two of these fails.</summary>
    public static NatBehavior Symmetric => new(NatMappingBehavior.AddressAndPortDependent, NatFilteringBehavior.AddressAndPortDependent);

    /// <summary>How long a mapping without open connections (and without a dial in progress) survives on the network's clock.</summary>
    public TimeSpan MappingTimeout
    {
        get;
        init => field = value > TimeSpan.Zero ? value : throw new ArgumentOutOfRangeException(nameof(value));
    } = DefaultMappingTimeout;

    /// <summary>
    /// When set, an established connection through this router that carries no byte (either way) for
    /// this long is forgotten and reset, as a router with a short TCP idle timer does — keep-alives keep
    /// it. Null (the default) keeps established connections for as long as they are open, as RFC 5382's
    /// 2 h 4 min minimum nearly does.
    /// </summary>
    public TimeSpan? EstablishedIdleTimeout
    {
        get;
        init => field = value is null || value > TimeSpan.Zero ? value : throw new ArgumentOutOfRangeException(nameof(value));
    }

    /// <summary>
    /// Whether an inside node that dials its own router's public endpoint reaches the inside node
    /// mapped there (RFC 4787 REQ-9), seen from its own mapping. Off by default: such a dial is dropped.
    /// </summary>
    public bool Hairpinning { get; init; }
}
