extern alias BouncyCastle2;

using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using NSec.Cryptography;
using P2PInference.Facilities.Identity;
using P2PInference.Facilities.Net.Noise;
using Bc2Ed25519 = BouncyCastle2::Org.BouncyCastle.Math.EC.Rfc8032.Ed25519;
using Bc2X25519 = BouncyCastle2::Org.BouncyCastle.Math.EC.Rfc7748.X25519;
using NSecPublicKey = NSec.Cryptography.PublicKey;

namespace P2PInference.Benchmarks.Crypto;

/// <summary>
/// The asymmetric operations of a Noise XX handshake, one thread, per library in the same run: the
/// product's own wrappers (whatever library they use) against BouncyCastle.Cryptography 2.x and NSec
/// (libsodium) called directly, each through its cheapest public API.
/// </summary>
public static class CryptoBenchmark
{
    private const string Product = "product";
    private const string BouncyCastle = "BouncyCastle.Cryptography";
    private const string Sodium = "NSec.Cryptography";

    // What the handshake signs: "noise-libp2p-static-key:" ‖ a 32-byte X25519 key.
    private static readonly byte[] Message = [.. Encoding.UTF8.GetBytes("noise-libp2p-static-key:"), .. RandomNumberGenerator.GetBytes(32)];

    public static string Run(TimeSpan perCell)
    {
        string[] libraries = [Product, BouncyCastle, Sodium];
        var rows = new List<(string Operation, Dictionary<string, double> Rates)>
        {
            ("X25519 key generation + 1 agreement", BestOf(libraries.ToDictionary(l => l, X25519Op), perCell)),
            ("Ed25519 sign (56 B)", BestOf(libraries.ToDictionary(l => l, SignOp), perCell)),
            ("Ed25519 verify (56 B)", BestOf(libraries.ToDictionary(l => l, VerifyOp), perCell)),
            ("Noise XX handshake, both sides, in memory, first contact", BestOf(new Dictionary<string, Action> { [Product] = HandshakeOp(firstContact: true) }, perCell)),
            ("Noise XX handshake, both sides, in memory, peers met before", BestOf(new Dictionary<string, Action> { [Product] = HandshakeOp(firstContact: false) }, perCell)),
        };

        var productLibrary = string.Join(", ", typeof(KeyPair).Assembly.GetReferencedAssemblies()
            .Where(a => a.Name is { } n && (n.Contains("BouncyCastle", StringComparison.Ordinal) || n.StartsWith("NSec", StringComparison.Ordinal)))
            .Select(a => $"{a.Name} {a.Version}"));
        string[] header = ["operation", "unit", $"product ({productLibrary})", Version(typeof(Bc2X25519), BouncyCastle), Version(typeof(Key), Sodium), "faster library"];
        var lines = new List<string[]> { header };
        var sb = new StringBuilder();
        foreach (var (operation, rates) in rows)
        {
            var cells = libraries.Select(l => rates.TryGetValue(l, out var r) ? r.ToString("N0", CultureInfo.InvariantCulture) : "-");
            var faster = rates.ContainsKey(BouncyCastle)
                ? (rates[Sodium] >= rates[BouncyCastle] ? $"NSec {rates[Sodium] / rates[BouncyCastle]:F2}x" : $"BouncyCastle {rates[BouncyCastle] / rates[Sodium]:F2}x")
                : "-";
            lines.Add([operation, "ops/s", .. cells, faster]);
        }
        var widths = Enumerable.Range(0, header.Length).Select(i => lines.Max(l => l[i].Length)).ToArray();
        for (var li = 0; li < lines.Count; li++)
        {
            sb.AppendLine("| " + string.Join(" | ", lines[li].Select((cell, i) => i <= 1 ? cell.PadRight(widths[i]) : cell.PadLeft(widths[i]))) + " |");
            if (li == 0)
                sb.AppendLine("|" + string.Join("|", widths.Select((w, i) => i <= 1 ? new string('-', w + 2) : new string('-', w + 1) + ":")) + "|");
        }
        sb.AppendLine();
        sb.AppendLine("- each cell: the best of 5 interleaved rounds (a shared machine's load bursts hit all libraries alike).");
        sb.AppendLine("- product: Curve25519KeyPair.Generate + Agree, KeyPair.Sign, PublicKey.Verify, as the Noise handshake calls them (with NSec: X25519 and Ed25519 signing call the libsodium NSec ships directly, verification goes through NSec).");
        sb.AppendLine("- handshake: the three XX messages as NoiseHandshake runs them (each side: 1 key generation, 3 agreements, and 1 verify at a first contact, none for a payload verified before; the static key and its signed payload are made once per identity); no I/O.");
        return sb.ToString();
    }

    private static string Version(Type type, string name) =>
        $"{name} {type.Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false).OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion.Split('+')[0]}";

    /// <summary>
    /// Operations per second of each library's <c>op</c>: the best of a few short rounds that take
    /// turns, so a burst of load from elsewhere on a shared machine hits every library alike.
    /// </summary>
    private static Dictionary<string, double> BestOf(Dictionary<string, Action> ops, TimeSpan perCell)
    {
        const int Rounds = 5;
        var best = ops.Keys.ToDictionary(l => l, _ => 0.0);
        foreach (var op in ops.Values)
            for (var i = 0; i < 50; i++) op();
        for (var round = 0; round < Rounds; round++)
            foreach (var (library, op) in ops)
                best[library] = Math.Max(best[library], Rate(op, perCell / Rounds));
        return best;
    }

    private static double Rate(Action op, TimeSpan duration)
    {
        var count = 0;
        var start = Stopwatch.GetTimestamp();
        TimeSpan elapsed;
        do
        {
            for (var i = 0; i < 10; i++) op();
            count += 10;
            elapsed = Stopwatch.GetElapsedTime(start);
        }
        while (elapsed < duration);
        return count / elapsed.TotalSeconds;
    }

    private static Action X25519Op(string library)
    {
        var remote = new byte[32];
        using (var pair = Curve25519KeyPair.Generate()) pair.PublicKey.CopyTo(remote, 0);
        var shared = new byte[32];
        switch (library)
        {
            case Product:
                return () =>
                {
                    using var pair = Curve25519KeyPair.Generate();
                    pair.Agree(remote, shared);
                };
            case BouncyCastle:
                var privateKey = new byte[32];
                var publicKey = new byte[32];
                return () =>
                {
                    RandomNumberGenerator.Fill(privateKey);
                    Bc2X25519.ScalarMultBase(privateKey, publicKey);
                    if (!Bc2X25519.CalculateAgreement(privateKey, remote, shared)) throw new InvalidOperationException("low-order point");
                };
            default:
                var remoteKey = NSecPublicKey.Import(KeyAgreementAlgorithm.X25519, remote, KeyBlobFormat.RawPublicKey);
                var ownPublic = new byte[32];
                return () =>
                {
                    using var key = Key.Create(KeyAgreementAlgorithm.X25519);
                    key.PublicKey.TryExport(KeyBlobFormat.RawPublicKey, ownPublic, out _);
                    using var secret = KeyAgreementAlgorithm.X25519.Agree(key, remoteKey, new SharedSecretCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport }) ?? throw new InvalidOperationException("low-order point");
                    secret.TryExport(SharedSecretBlobFormat.RawSharedSecret, shared, out _);
                };
        }
    }

    private static Action SignOp(string library)
    {
        var seed = RandomNumberGenerator.GetBytes(32);
        var signature = new byte[64];
        switch (library)
        {
            case Product:
                var pair = KeyPair.FromSeed(seed);
                return () => pair.Sign(Message);
            case BouncyCastle:
                var publicKey = new byte[32];
                Bc2Ed25519.GeneratePublicKey(seed, publicKey);
                return () => Bc2Ed25519.Sign(seed, publicKey, Message, signature);
            default:
                var key = Key.Import(SignatureAlgorithm.Ed25519, seed, KeyBlobFormat.RawPrivateKey);
                return () => SignatureAlgorithm.Ed25519.Sign(key, Message, signature);
        }
    }

    private static Action VerifyOp(string library)
    {
        var pair = KeyPair.FromSeed(RandomNumberGenerator.GetBytes(32));
        var signature = pair.Sign(Message);
        var publicKey = pair.PublicKey.Data.ToArray();
        switch (library)
        {
            case Product:
                // The handshake receives the key as bytes each time, so the product decodes it per verification.
                return () =>
                {
                    if (!new Facilities.Identity.PublicKey(Facilities.Identity.Proto.KeyType.Ed25519, publicKey).Verify(Message, signature)) throw new InvalidOperationException("bad signature");
                };
            case BouncyCastle:
                return () =>
                {
                    if (!Bc2Ed25519.Verify(signature, publicKey, Message)) throw new InvalidOperationException("bad signature");
                };
            default:
                return () =>
                {
                    var key = NSecPublicKey.Import(SignatureAlgorithm.Ed25519, publicKey, KeyBlobFormat.RawPublicKey);
                    if (!SignatureAlgorithm.Ed25519.Verify(key, Message, signature)) throw new InvalidOperationException("bad signature");
                };
        }
    }

    /// <summary>
    /// One handshake between the same two identities. A <paramref name="firstContact"/> verifies both
    /// payloads (a fresh table of verified payloads each time); otherwise both sides find the other's
    /// payload verified before, as when peers connect again.
    /// </summary>
    private static Action HandshakeOp(bool firstContact)
    {
        var shared = new VerifiedStaticKeys();
        var initiatorIdentity = NoiseLocalIdentity.For(KeyPair.Generate());
        var responderIdentity = NoiseLocalIdentity.For(KeyPair.Generate());
        var buffer = new byte[HandshakeState.MaxMessageSize];
        return () =>
        {
            using var initiator = new HandshakeState(true, ReadOnlySpan<byte>.Empty, initiatorIdentity.StaticKey);
            using var responder = new HandshakeState(false, ReadOnlySpan<byte>.Empty, responderIdentity.StaticKey);
            var length = initiator.WriteMessage(ReadOnlySpan<byte>.Empty, buffer);
            responder.ReadMessage(buffer.AsSpan(0, length));
            length = responder.WriteMessage(responderIdentity.Payload, buffer);
            var verified = firstContact ? new VerifiedStaticKeys() : shared;
            NoisePayload.Verify(initiator.ReadMessage(buffer.AsSpan(0, length)), initiator.RemoteStaticPublicKey!, verified, out _);
            length = initiator.WriteMessage(initiatorIdentity.Payload, buffer);
            NoisePayload.Verify(responder.ReadMessage(buffer.AsSpan(0, length)), responder.RemoteStaticPublicKey!, verified, out _);
            var (a, b) = initiator.Split();
            var (c, d) = responder.Split();
            a.Dispose();
            b.Dispose();
            c.Dispose();
            d.Dispose();
        };
    }
}
