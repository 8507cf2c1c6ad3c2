using System.Buffers;
using System.Security.Cryptography;

namespace P2PInference.Facilities.Net.Noise;

/// <summary>Noise SymmetricState (rev 34 §5.2) over SHA-256: chaining key, handshake hash and a CipherState.</summary>
internal sealed class SymmetricState : IDisposable
{
    public const int HashSize = 32;

    private readonly byte[] _ck = new byte[HashSize];
    private readonly byte[] _h = new byte[HashSize];
    private readonly CipherState _cipher = new();

    public SymmetricState(string protocolName)
    {
        var name = System.Text.Encoding.ASCII.GetBytes(protocolName);
        if (name.Length <= HashSize)
            name.CopyTo(_h, 0);
        else
            SHA256.HashData(name, _h);
        _h.CopyTo(_ck, 0);
    }

    /// <summary>The handshake hash h: binds the whole transcript (channel binding).</summary>
    public ReadOnlySpan<byte> HandshakeHash => _h;

    public bool HasKey => _cipher.HasKey;

    public void MixKey(ReadOnlySpan<byte> inputKeyMaterial)
    {
        Span<byte> tempKey = stackalloc byte[HashSize];
        Hkdf2(_ck, inputKeyMaterial, _ck, tempKey);
        _cipher.InitializeKey(tempKey);
        CryptographicOperations.ZeroMemory(tempKey);
    }

    public void MixHash(ReadOnlySpan<byte> data)
    {
        // One-shot over h || data: an incremental hash is a native context (and a finalizable handle)
        // per call, and a handshake mixes a handful of short inputs.
        var length = HashSize + data.Length;
        byte[]? rented = null;
        var input = length <= 512 ? stackalloc byte[length] : (rented = ArrayPool<byte>.Shared.Rent(length)).AsSpan(0, length);
        _h.CopyTo(input);
        data.CopyTo(input[HashSize..]);
        SHA256.HashData(input, _h);
        if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
    }

    /// <summary>Returns the bytes written: plaintext length, plus 16 once a key is set.</summary>
    public int EncryptAndHash(ReadOnlySpan<byte> plaintext, Span<byte> ciphertext)
    {
        var written = _cipher.EncryptWithAd(_h, plaintext, ciphertext);
        MixHash(ciphertext[..written]);
        return written;
    }

    /// <exception cref="NoiseException">The ciphertext does not decrypt.</exception>
    public byte[] DecryptAndHash(ReadOnlySpan<byte> ciphertext)
    {
        if (_cipher.HasKey && ciphertext.Length < CipherState.TagSize)
            throw new NoiseException($"handshake ciphertext of {ciphertext.Length} bytes is shorter than its tag");
        var plaintext = new byte[_cipher.HasKey ? ciphertext.Length - CipherState.TagSize : ciphertext.Length];
        _cipher.DecryptWithAd(_h, ciphertext, plaintext);
        MixHash(ciphertext);
        return plaintext;
    }

    /// <summary>The two transport CipherStates: (initiator→responder, responder→initiator).</summary>
    public (CipherState First, CipherState Second) Split()
    {
        Span<byte> k1 = stackalloc byte[HashSize];
        Span<byte> k2 = stackalloc byte[HashSize];
        Hkdf2(_ck, ReadOnlySpan<byte>.Empty, k1, k2);
        var first = new CipherState();
        var second = new CipherState();
        first.InitializeKey(k1);
        second.InitializeKey(k2);
        CryptographicOperations.ZeroMemory(k1);
        CryptographicOperations.ZeroMemory(k2);
        return (first, second);
    }

    /// <summary>Noise's HKDF with two outputs; <paramref name="output1"/> may alias <paramref name="chainingKey"/>.</summary>
    private static void Hkdf2(ReadOnlySpan<byte> chainingKey, ReadOnlySpan<byte> inputKeyMaterial, Span<byte> output1, Span<byte> output2)
    {
        Span<byte> tempKey = stackalloc byte[HashSize];
        HMACSHA256.HashData(chainingKey, inputKeyMaterial, tempKey);
        Span<byte> first = stackalloc byte[HashSize];
        ReadOnlySpan<byte> one = [0x01];
        HMACSHA256.HashData(tempKey, one, first);
        Span<byte> block = stackalloc byte[HashSize + 1];
        first.CopyTo(block);
        block[HashSize] = 0x02;
        HMACSHA256.HashData(tempKey, block, output2);
        first.CopyTo(output1);
        CryptographicOperations.ZeroMemory(first);
        CryptographicOperations.ZeroMemory(tempKey);
        CryptographicOperations.ZeroMemory(block);
    }

    public void Dispose()
    {
        _cipher.Dispose();
        CryptographicOperations.ZeroMemory(_ck);
    }
}
