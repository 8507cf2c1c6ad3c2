using System.Buffers.Binary;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Trust;

/// <summary>
/// The operator's key: the trust root of one cluster. It signs <see cref="RoleGrant"/>s and
/// <see cref="SignedRevocationList"/>s (each under its own domain string) and nothing else; its public half
/// is the <see cref="ClusterId"/> every node checks them against. Stored like a node key
/// (<see cref="KeyFile"/>: the libp2p private key protobuf, owner-only).
/// </summary>
public sealed class ClusterKey
{
    private readonly KeyPair _key;

    public ClusterKey(KeyPair key)
    {
        ArgumentNullException.ThrowIfNull(key);
        _key = key;
        Id = new ClusterId(key.PublicKey);
    }

    public ClusterId Id { get; }

    public static ClusterKey Generate(IRandomSource source) => new(KeyPair.Generate(source));

    /// <exception cref="FileNotFoundException">No key file at the path.</exception>
    /// <exception cref="InvalidDataException">The file is not a key.</exception>
    public static ClusterKey Load(string path) => new(KeyFile.Load(path));

    /// <summary>Writes the key owner-only (0600), replacing the file atomically.</summary>
    public void Save(string path) => KeyFile.Save(path, _key);

    /// <summary>A grant of <paramref name="role"/> to <paramref name="peer"/>, valid from <paramref name="notBefore"/> until <paramref name="expiry"/>.</summary>
    public RoleGrant Issue(PeerId peer, GrantRole role, DateTimeOffset notBefore, DateTimeOffset expiry, ulong serial) =>
        RoleGrant.Sign(_key, role, peer, notBefore, expiry, serial);

    /// <summary>Signs <paramref name="list"/> as the revocations in force from <paramref name="issued"/>, replacing any list signed before.</summary>
    /// <exception cref="ArgumentException">The list is too long for one signed list.</exception>
    public SignedRevocationList SignRevocations(RevocationList list, DateTimeOffset issued) => SignedRevocationList.Sign(_key, list, issued);

    /// <summary>
    /// A grant valid from a minute before <paramref name="now"/> (clocks differ) for <paramref name="validity"/>,
    /// with a serial drawn from <paramref name="serials"/>.
    /// </summary>
    public RoleGrant Issue(PeerId peer, GrantRole role, DateTimeOffset now, TimeSpan validity, IRandomSource serials)
    {
        ArgumentNullException.ThrowIfNull(serials);
        if (validity <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(validity), validity, "must be positive");
        Span<byte> serial = stackalloc byte[8];
        serials.Fill(serial);
        return Issue(peer, role, now - TimeSpan.FromMinutes(1), now + validity, BinaryPrimitives.ReadUInt64BigEndian(serial));
    }
}
