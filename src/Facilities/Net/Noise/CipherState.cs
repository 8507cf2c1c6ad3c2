using System.Buffers.Binary;
using System.Security.Cryptography;

namespace P2PInference.Facilities.Net.Noise;

/// <summary>
/// Noise CipherState for ChaChaPoly: a key (or none yet) and a 64-bit message counter used as the
/// nonce (4 zero bytes, then the counter little-endian). Not thread-safe: one direction, one user.
/// </summary>
internal sealed class CipherState : IDisposable
{
    public const int KeySize = 32;
    public const int TagSize = 16;
    private const int NonceSize = 12;

    private ChaCha20Poly1305? _aead;
    private ulong _nonce;

    public bool HasKey => _aead is not null;

    /// <summary>Messages sent or received under the current key so far.</summary>
    public ulong Nonce => _nonce;

    public void InitializeKey(ReadOnlySpan<byte> key)
    {
        if (key.Length < KeySize) throw new ArgumentException($"a ChaChaPoly key is {KeySize} bytes", nameof(key));
        _aead?.Dispose();
        _aead = new ChaCha20Poly1305(key[..KeySize]);
        _nonce = 0;
    }

    /// <summary>Writes <paramref name="plaintext"/>.Length + 16 bytes (or a copy when there is no key yet).</summary>
    public int EncryptWithAd(ReadOnlySpan<byte> ad, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext)
    {
        if (_aead is null)
        {
            plaintext.CopyTo(ciphertext);
            return plaintext.Length;
        }
        Span<byte> nonce = stackalloc byte[NonceSize];
        NextNonce(nonce);
        _aead.Encrypt(nonce, plaintext, ciphertext[..plaintext.Length], ciphertext.Slice(plaintext.Length, TagSize), ad);
        _nonce++;
        return plaintext.Length + TagSize;
    }

    /// <summary>
    /// Decrypts <paramref name="ciphertext"/> (payload ‖ tag) into <paramref name="plaintext"/>, which may
    /// be the same memory as the ciphertext's payload part. The nonce advances only on success.
    /// </summary>
    /// <exception cref="NoiseException">Too short, or the tag does not verify.</exception>
    public int DecryptWithAd(ReadOnlySpan<byte> ad, ReadOnlySpan<byte> ciphertext, Span<byte> plaintext)
    {
        if (_aead is null)
        {
            ciphertext.CopyTo(plaintext);
            return ciphertext.Length;
        }
        if (ciphertext.Length < TagSize)
            throw new NoiseException($"a ciphertext of {ciphertext.Length} bytes is shorter than its {TagSize}-byte tag");
        var length = ciphertext.Length - TagSize;
        Span<byte> nonce = stackalloc byte[NonceSize];
        NextNonce(nonce);
        try
        {
            _aead.Decrypt(nonce, ciphertext[..length], ciphertext.Slice(length, TagSize), plaintext[..length], ad);
        }
        catch (CryptographicException e)
        {
            throw new NoiseException("message failed to decrypt: corrupted, forged or out of order", e);
        }
        _nonce++;
        return length;
    }

    private void NextNonce(Span<byte> nonce)
    {
        // 2^64-1 is reserved by the Noise spec; a connection this long must end rather than reuse a nonce.
        if (_nonce == ulong.MaxValue)
            throw new NoiseException("nonce space exhausted; the connection must be re-established");
        nonce[..4].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(nonce[4..], _nonce);
    }

    /// <summary>
    /// Keeps the disposed AEAD object rather than clearing it: a racing caller then gets
    /// ObjectDisposedException, never the no-key path that would pass plaintext through.
    /// </summary>
    public void Dispose() => _aead?.Dispose();
}
