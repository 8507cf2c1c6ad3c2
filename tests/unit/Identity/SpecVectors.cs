namespace P2PInference.Tests.Unit.Identity;

/// <summary>Vectors from libp2p/specs peer-ids/peer-ids.md (test vectors and string representation).</summary>
internal static class SpecVectors
{
    public const string Ed25519PrivateKeyHex =
        "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e";

    public const string Ed25519PublicKeyHex = "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e";

    /// <summary>base58btc of the identity multihash of <see cref="Ed25519PublicKeyHex"/>.</summary>
    public const string Ed25519PeerId = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq";

    /// <summary>The spec's sha2-256 PeerId example and its CIDv1 (libp2p-key, base32) form.</summary>
    public const string Sha256PeerId = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
    public const string Sha256PeerIdCid = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe";
    public const string Sha256PeerIdMultihashHex = "12209dff3b17d74cf4d38a50d8b6383e92d181a10395a5e73a726dcccbd21bf6f0b9";

    /// <summary>The spec's Ed25519 PeerId example and its CIDv1 form.</summary>
    public const string Ed25519ExamplePeerId = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    public const string Ed25519ExamplePeerIdCid = "bafzaajaiaejcal72gwuz2or47oyxxn6b3rkwdmmkrxgkjxzy3rqt5kczyn7lcm3l";
}
