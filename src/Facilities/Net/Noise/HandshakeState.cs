using System.Security.Cryptography;
using P2PInference.Facilities.Identity;

namespace P2PInference.Facilities.Net.Noise;

/// <summary>
/// Noise HandshakeState (rev 34 §5.3) for exactly <c>Noise_XX_25519_ChaChaPoly_SHA256</c>:
/// <c>-> e</c>, <c>&lt;- e, ee, s, es</c>, <c>-> s, se</c>. Knows nothing of libp2p payloads or framing.
/// </summary>
internal sealed class HandshakeState : IDisposable
{
    public const string ProtocolName = "Noise_XX_25519_ChaChaPoly_SHA256";
    private const int DhSize = Curve25519KeyPair.KeySize;
    private const int EncryptedKeySize = DhSize + CipherState.TagSize;

    /// <summary>Largest Noise message (the frame's length prefix is 16 bits).</summary>
    public const int MaxMessageSize = 65535;

    private readonly bool _initiator;
    private readonly SymmetricState _symmetric = new(ProtocolName);
    private readonly Curve25519KeyPair _static;
    private readonly byte[]? _fixedEphemeral;
    private readonly IRandomSource _randomSource;
    private Curve25519KeyPair? _ephemeral;
    private byte[]? _remoteEphemeral;
    private int _message;

    /// <param name="ephemeralPrivateKey">Only for test vectors; normally fresh from <paramref name="randomSource"/>.</param>
    /// <param name="randomSource">Where the ephemeral key comes from; null: the system CSPRNG.</param>
    public HandshakeState(bool initiator, ReadOnlySpan<byte> prologue, Curve25519KeyPair staticKey, ReadOnlySpan<byte> ephemeralPrivateKey = default,
        IRandomSource? randomSource = null)
    {
        _initiator = initiator;
        _static = staticKey;
        _fixedEphemeral = ephemeralPrivateKey.IsEmpty ? null : ephemeralPrivateKey.ToArray();
        _randomSource = randomSource ?? SystemRandomSource.Instance;
        _symmetric.MixHash(prologue);
    }

    public bool IsInitiator => _initiator;
    public byte[] LocalStaticPublicKey => _static.PublicKey;

    /// <summary>The remote's static X25519 key, once the message carrying it has been read.</summary>
    public byte[]? RemoteStaticPublicKey { get; private set; }

    public bool IsComplete => _message == 3;
    public ReadOnlySpan<byte> HandshakeHash => _symmetric.HandshakeHash;

    /// <summary>Whether this side writes the next message.</summary>
    public bool IsMyTurn => !IsComplete && (_message % 2 == 0) == _initiator;

    /// <summary>Bytes <see cref="WriteMessage"/> needs for a payload of the given length.</summary>
    public int MessageLength(int payloadLength) => _message switch
    {
        0 => DhSize + payloadLength,
        1 => DhSize + EncryptedKeySize + payloadLength + CipherState.TagSize,
        _ => EncryptedKeySize + payloadLength + CipherState.TagSize,
    };

    /// <summary>Writes the next handshake message carrying <paramref name="payload"/>; returns its length.</summary>
    public int WriteMessage(ReadOnlySpan<byte> payload, Span<byte> message)
    {
        if (!IsMyTurn) throw new InvalidOperationException("not this side's turn to write a handshake message");
        var length = MessageLength(payload.Length);
        if (length > MaxMessageSize) throw new ArgumentException("handshake payload too large for one Noise message", nameof(payload));
        if (message.Length < length) throw new ArgumentException("message buffer too small", nameof(message));
        Span<byte> shared = stackalloc byte[DhSize];
        var at = 0;
        switch (_message)
        {
            case 0: // -> e
                at += WriteEphemeral(message);
                break;
            case 1: // <- e, ee, s, es
                at += WriteEphemeral(message);
                _ephemeral!.Agree(_remoteEphemeral!, shared);
                _symmetric.MixKey(shared);
                at += _symmetric.EncryptAndHash(_static.PublicKey, message[at..]);
                _static.Agree(_remoteEphemeral!, shared);
                _symmetric.MixKey(shared);
                break;
            default: // -> s, se
                at += _symmetric.EncryptAndHash(_static.PublicKey, message[at..]);
                _static.Agree(_remoteEphemeral!, shared);
                _symmetric.MixKey(shared);
                break;
        }
        CryptographicOperations.ZeroMemory(shared);
        at += _symmetric.EncryptAndHash(payload, message[at..]);
        _message++;
        return at;
    }

    /// <summary>Reads the next handshake message; returns its decrypted payload.</summary>
    /// <exception cref="NoiseException">Too short, a bad key, or it does not decrypt.</exception>
    public byte[] ReadMessage(ReadOnlySpan<byte> message)
    {
        if (IsComplete || IsMyTurn) throw new InvalidOperationException("not this side's turn to read a handshake message");
        if (message.Length > MaxMessageSize)
            throw new NoiseException($"handshake message of {message.Length} bytes exceeds {MaxMessageSize}");
        var minimum = MessageLength(0);
        if (message.Length < minimum)
            throw new NoiseException($"handshake message {_message + 1} is {message.Length} bytes, less than the {minimum} it must hold");
        Span<byte> shared = stackalloc byte[DhSize];
        var at = 0;
        switch (_message)
        {
            case 0: // -> e
                at += ReadEphemeral(message);
                break;
            case 1: // <- e, ee, s, es
                at += ReadEphemeral(message);
                _ephemeral!.Agree(_remoteEphemeral!, shared);
                _symmetric.MixKey(shared);
                RemoteStaticPublicKey = _symmetric.DecryptAndHash(message.Slice(at, EncryptedKeySize));
                at += EncryptedKeySize;
                _ephemeral.Agree(RemoteStaticPublicKey, shared);
                _symmetric.MixKey(shared);
                break;
            default: // -> s, se
                RemoteStaticPublicKey = _symmetric.DecryptAndHash(message[..EncryptedKeySize]);
                at += EncryptedKeySize;
                _ephemeral!.Agree(RemoteStaticPublicKey, shared);
                _symmetric.MixKey(shared);
                break;
        }
        CryptographicOperations.ZeroMemory(shared);
        var payload = _symmetric.DecryptAndHash(message[at..]);
        _message++;
        return payload;
    }

    /// <summary>After the last message: (sending, receiving) CipherStates for this side.</summary>
    public (CipherState Send, CipherState Receive) Split()
    {
        if (!IsComplete) throw new InvalidOperationException("the handshake is not complete");
        var (initiatorToResponder, responderToInitiator) = _symmetric.Split();
        return _initiator ? (initiatorToResponder, responderToInitiator) : (responderToInitiator, initiatorToResponder);
    }

    private int WriteEphemeral(Span<byte> message)
    {
        _ephemeral = _fixedEphemeral is null ? Curve25519KeyPair.Generate(_randomSource) : Curve25519KeyPair.FromPrivateKey(_fixedEphemeral);
        _ephemeral.PublicKey.CopyTo(message);
        _symmetric.MixHash(_ephemeral.PublicKey);
        return DhSize;
    }

    private int ReadEphemeral(ReadOnlySpan<byte> message)
    {
        _remoteEphemeral = message[..DhSize].ToArray();
        _symmetric.MixHash(_remoteEphemeral);
        return DhSize;
    }

    public void Dispose()
    {
        _ephemeral?.Dispose();
        _symmetric.Dispose();
        if (_fixedEphemeral is not null) CryptographicOperations.ZeroMemory(_fixedEphemeral);
    }
}
