using Google.Protobuf.Reflection;
using P2PInference.Tests.Shared;

namespace P2PInference.Tests.Unit.Contracts;

/// <summary>
/// Every wire contract (our RPC and worker contracts, and the libp2p messages we must keep
/// compatible) is compared with its snapshot in fixtures/contracts: a removed, renumbered,
/// renamed or retyped field fails; an added one passes and is reported. To accept a deliberate
/// change, run with P2P_UPDATE_CONTRACTS=1 and commit the new snapshot.
/// </summary>
[TestFixture]
public sealed class ContractSnapshotTests
{
    private static readonly FileDescriptor[] Contracts =
    [
        P2PInference.Workers.Contracts.Auth.AuthReflection.Descriptor,
        P2PInference.Workers.Contracts.Inference.InferenceReflection.Descriptor,
        P2PInference.Facilities.Rpc.Proto.RpcReflection.Descriptor,
        P2PInference.Facilities.Dht.Proto.DhtReflection.Descriptor,
        P2PInference.Facilities.Identity.Proto.KeysReflection.Descriptor,
        P2PInference.Facilities.Net.Noise.Proto.NoisePayloadReflection.Descriptor,
        P2PInference.Facilities.Net.Protocols.Identify.Proto.IdentifyReflection.Descriptor,
    ];

    public static IEnumerable<TestCaseData> Files() =>
        Contracts.Select(f => new TestCaseData(f).SetArgDisplayNames(f.Name));

    [TestCaseSource(nameof(Files))]
    public void Contract_KeepsEveryFieldOfItsSnapshot(FileDescriptor file)
    {
        var path = RepositoryPaths.Fixture("contracts", Path.GetFileNameWithoutExtension(file.Name) + ".contract");
        var current = Describe(file);
        if (Environment.GetEnvironmentVariable("P2P_UPDATE_CONTRACTS") == "1" || !File.Exists(path))
        {
            Assert.That(Environment.GetEnvironmentVariable("CI"), Is.Null.Or.Empty,
                $"{path} is missing: snapshots are written by developers (P2P_UPDATE_CONTRACTS=1), never by CI");
            File.WriteAllLines(path, current.Values);
            Assert.Pass($"wrote {path}");
        }

        var snapshot = File.ReadAllLines(path).Where(l => l.Length > 0).ToDictionary(KeyOf);
        var broken = snapshot.Where(s => !current.TryGetValue(s.Key, out var now) || now != s.Value)
            .Select(s => $"was: {s.Value}    now: {(current.TryGetValue(s.Key, out var now) ? now : "(removed)")}")
            .ToArray();
        var added = current.Keys.Except(snapshot.Keys).Select(k => current[k]).ToArray();
        if (added.Length > 0)
            TestContext.Out.WriteLine($"{file.Name}: new entries (compatible; update the snapshot):\n  " + string.Join("\n  ", added));

        Assert.That(broken, Is.Empty, $"{file.Name} breaks its wire contract (fixtures/contracts)");
    }

    [Test]
    public void Describe_NamesEachFieldsNumberNameAndType()
    {
        var before = Describe(P2PInference.Workers.Contracts.Inference.InferenceReflection.Descriptor);
        var key = before.Keys.First(k => k.EndsWith("InferRequest#4", StringComparison.Ordinal));

        Assert.That(before[key], Does.Contain("max_tokens int32"));
    }

    /// <summary>One line per field and enum value, keyed by its wire identity (message and number).</summary>
    private static SortedDictionary<string, string> Describe(FileDescriptor file)
    {
        var lines = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var message in Flatten(file.MessageTypes))
            foreach (var field in message.Fields.InFieldNumberOrder())
            {
                var type = field.FieldType switch
                {
                    FieldType.Message => field.IsMap ? "map" : field.MessageType.FullName,
                    FieldType.Enum => field.EnumType.FullName,
                    _ => field.FieldType.ToString().ToLowerInvariant(),
                };
                var label = field.IsRepeated ? "repeated " : field.HasPresence ? "optional " : "";
                var key = $"{message.FullName}#{field.FieldNumber}";
                lines[key] = $"{key} {field.Name} {label}{type}".Replace("  ", " ", StringComparison.Ordinal);
            }
        foreach (var e in file.EnumTypes.Concat(Flatten(file.MessageTypes).SelectMany(m => m.EnumTypes)))
            foreach (var value in e.Values)
            {
                var key = $"{e.FullName}={value.Number}";
                lines[key] = $"{key} {value.Name}";
            }
        return lines;
    }

    private static string KeyOf(string line) => line.Split(' ', 2)[0];

    private static IEnumerable<MessageDescriptor> Flatten(IEnumerable<MessageDescriptor> messages) =>
        messages.SelectMany(m => Flatten(m.NestedTypes).Prepend(m));
}
