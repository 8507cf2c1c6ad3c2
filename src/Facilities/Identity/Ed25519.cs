namespace P2PInference.Facilities.Identity;

internal static class Ed25519
{
    public const int SignatureSize = 64;
    public const int SeedSize = 32;
    public const int PublicKeySize = 32;
}
