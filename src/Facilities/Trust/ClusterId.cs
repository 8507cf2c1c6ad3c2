using P2PInference.Facilities.Encoding;
using P2PInference.Facilities.Identity;
using KeyType = P2PInference.Facilities.Identity.Proto.KeyType;

namespace P2PInference.Facilities.Trust;

/// <summary>
/// A cluster's name: the printable form of its operator key's public half, <c>p2pc</c> followed by the
/// base58btc of the 32 Ed25519 bytes. Knowing it is enough to check every grant of the cluster.
/// </summary>
public sealed class ClusterId : IEquatable<ClusterId>
{
    public const string Prefix = "p2pc";

    private readonly string _text;

    public ClusterId(PublicKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (key.Type != KeyType.Ed25519) throw new ArgumentException("a cluster key is Ed25519", nameof(key));
        Key = key;
        _text = Prefix + Base58.Encode(key.Data);
    }

    /// <summary>The cluster key's public half: grants of this cluster verify under it.</summary>
    public PublicKey Key { get; }

    /// <exception cref="FormatException">Not a cluster id.</exception>
    public static ClusterId Parse(string text) =>
        TryParse(text, out var id, out var error) ? id! : throw new FormatException(error);

    public static bool TryParse(string? text, out ClusterId? id) => TryParse(text, out id, out _);

    private static bool TryParse(string? text, out ClusterId? id, out string error)
    {
        id = null;
        text = text?.Trim();
        if (string.IsNullOrEmpty(text) || !text.StartsWith(Prefix, StringComparison.Ordinal) || text.Length > Prefix.Length + 60)
        {
            error = $"'{text}' is not a cluster id (it starts with '{Prefix}'; `p2pinference cluster init` prints it)";
            return false;
        }
        try
        {
            var bytes = Base58.Decode(text.AsSpan(Prefix.Length));
            if (bytes.Length != Ed25519.PublicKeySize)
            {
                error = $"'{text}' is not a cluster id: it holds {bytes.Length} bytes, not {Ed25519.PublicKeySize}";
                return false;
            }
            id = new ClusterId(new PublicKey(KeyType.Ed25519, bytes));
            error = "";
            return true;
        }
        catch (FormatException e)
        {
            error = $"'{text}' is not a cluster id: {e.Message}";
            return false;
        }
    }

    public override string ToString() => _text;

    public bool Equals(ClusterId? other) => other is not null && Key.Equals(other.Key);

    public override bool Equals(object? obj) => Equals(obj as ClusterId);

    public override int GetHashCode() => Key.GetHashCode();

    public static bool operator ==(ClusterId? a, ClusterId? b) => a is null ? b is null : a.Equals(b);

    public static bool operator !=(ClusterId? a, ClusterId? b) => !(a == b);
}
