using System.Reflection;
using Google.Protobuf.Reflection;
using MessagePack;
using P2PInference.Facilities.Rpc;
using P2PInference.Facilities.Rpc.Wire;
using P2PInference.Tests.Shared;
using P2PInference.Workers.Contracts.Auth;
using P2PInference.Workers.Contracts.Inference;

namespace P2PInference.Tests.Unit.Contracts;

/// <summary>
/// Every wire contract is compared with its snapshot in fixtures/contracts. Our own protocols (the
/// RPC envelope and the worker contracts) are MessagePack contract types, described by reflection:
/// a removed, re-keyed, renamed or retyped member fails, and so does a new one until the snapshot
/// is updated on purpose. libp2p's protobuf messages are described from their descriptors; a new
/// field there is compatible and only reported. To accept a deliberate change, run with
/// P2P_UPDATE_CONTRACTS=1 and commit the new snapshot.
/// </summary>
[TestFixture]
public sealed class ContractSnapshotTests
{
    private static readonly (string Name, Type[] Types)[] MessagePackContracts =
    [
        ("rpc", [.. ContractTypes(typeof(RequestEnvelope)), typeof(RpcStatusCode)]),
        ("auth", ContractTypes(typeof(RegisterRequest))),
        ("inference", ContractTypes(typeof(InferRequest))),
    ];

    private static readonly FileDescriptor[] ProtobufContracts =
    [
        P2PInference.Facilities.Dht.Proto.DhtReflection.Descriptor,
        P2PInference.Facilities.Identity.Proto.KeysReflection.Descriptor,
        P2PInference.Facilities.Net.Noise.Proto.NoisePayloadReflection.Descriptor,
        P2PInference.Facilities.Net.Protocols.Identify.Proto.IdentifyReflection.Descriptor,
    ];

    public static IEnumerable<TestCaseData> MessagePackFiles() =>
        MessagePackContracts.Select(c => new TestCaseData(c.Name, c.Types).SetArgDisplayNames(c.Name));

    public static IEnumerable<TestCaseData> ProtobufFiles() =>
        ProtobufContracts.Select(f => new TestCaseData(f).SetArgDisplayNames(f.Name));

    [TestCaseSource(nameof(MessagePackFiles))]
    public void MessagePackContract_MatchesItsSnapshot_Exactly(string name, Type[] types)
    {
        var current = Describe(types);
        var (broken, added) = CompareWithSnapshot(name, current);

        Assert.Multiple(() =>
        {
            Assert.That(broken, Is.Empty, $"{name} breaks its wire contract (fixtures/contracts/{name}.contract): old peers and stored records would misread it");
            Assert.That(added, Is.Empty,
                $"{name} has members its snapshot lacks: if they are meant to be on the wire, update fixtures/contracts/{name}.contract (P2P_UPDATE_CONTRACTS=1)");
        });
    }

    [TestCaseSource(nameof(ProtobufFiles))]
    public void ProtobufContract_KeepsEveryFieldOfItsSnapshot(FileDescriptor file)
    {
        var name = Path.GetFileNameWithoutExtension(file.Name);
        var (broken, added) = CompareWithSnapshot(name, Describe(file));
        if (added.Length > 0)
            TestContext.Out.WriteLine($"{file.Name}: new entries (compatible; update the snapshot):\n  " + string.Join("\n  ", added));

        Assert.That(broken, Is.Empty, $"{file.Name} breaks its wire contract (fixtures/contracts)");
    }

    [Test]
    public void Describe_NamesEachMembersKeyNameAndType()
    {
        var lines = Describe([typeof(InferRequest), typeof(ValidateResponse), typeof(RequestEnvelope), typeof(RpcStatusCode)]);

        Assert.Multiple(() =>
        {
            Assert.That(lines[$"{typeof(InferRequest).FullName}#3"], Does.EndWith(" MaxTokens int32"));
            Assert.That(lines[$"{typeof(InferRequest).FullName}#5"], Does.EndWith(" Seed int64?"));
            Assert.That(lines[$"{typeof(InferRequest).FullName}#6"], Does.EndWith(" Stop list<string>"));
            Assert.That(lines[$"{typeof(ValidateResponse).FullName}#2"], Does.EndWith($" Quota {typeof(Quota).FullName}?"));
            Assert.That(lines[$"{typeof(RequestEnvelope).FullName}#1"], Does.EndWith(" Payload bytes"));
            Assert.That(lines[$"{typeof(RequestEnvelope).FullName}#5"], Does.EndWith(" Metadata map<string,string>"));
            Assert.That(lines[$"{typeof(RpcStatusCode).FullName}=7"], Does.EndWith(" ResourceExhausted"));
        });
    }

    [Test]
    public void Comparison_FlagsRemovedReKeyedRetypedAndAddedMembers()
    {
        var current = Describe([typeof(InferRequest)]);
        var type = typeof(InferRequest).FullName;
        var snapshot = new SortedDictionary<string, string>(current, StringComparer.Ordinal)
        {
            // Members the type no longer has under these keys: one removed, one moved to another key.
            [$"{type}#9"] = $"{type}#9 Legacy string",
            [$"{type}#2"] = $"{type}#2 Model string",
            // A type that changed.
            [$"{type}#3"] = $"{type}#3 MaxTokens int64",
        };
        snapshot.Remove($"{type}#6");

        var (broken, added) = Compare(snapshot, current);

        Assert.That(broken, Has.Length.EqualTo(3));
        Assert.That(broken, Has.Some.Contains("Legacy string").And.Contains("(removed)"));
        Assert.That(broken, Has.Some.Contains("#2 Model string").And.Contains("now: " + current[$"{type}#2"]));
        Assert.That(broken, Has.Some.Contains("MaxTokens int64").And.Contains("MaxTokens int32"));
        Assert.That(added, Is.EqualTo(new[] { current[$"{type}#6"] }));
    }

    private static (string[] Broken, string[] Added) CompareWithSnapshot(string name, SortedDictionary<string, string> current)
    {
        var path = RepositoryPaths.Fixture("contracts", name + ".contract");
        if (Environment.GetEnvironmentVariable("P2P_UPDATE_CONTRACTS") == "1" || !File.Exists(path))
        {
            Assert.That(Environment.GetEnvironmentVariable("CI"), Is.Null.Or.Empty,
                $"{path} is missing: snapshots are written by developers (P2P_UPDATE_CONTRACTS=1), never by CI");
            File.WriteAllLines(path, current.Values);
            Assert.Pass($"wrote {path}");
        }

        var snapshot = new SortedDictionary<string, string>(File.ReadAllLines(path).Where(l => l.Length > 0).ToDictionary(KeyOf), StringComparer.Ordinal);
        return Compare(snapshot, current);
    }

    private static (string[] Broken, string[] Added) Compare(SortedDictionary<string, string> snapshot, SortedDictionary<string, string> current)
    {
        var broken = snapshot.Where(s => !current.TryGetValue(s.Key, out var now) || now != s.Value)
            .Select(s => $"was: {s.Value}    now: {(current.TryGetValue(s.Key, out var now) ? now : "(removed)")}")
            .ToArray();
        var added = current.Keys.Except(snapshot.Keys).Select(k => current[k]).ToArray();
        return (broken, added);
    }

    private static Type[] ContractTypes(Type sample) =>
        [.. sample.Assembly.GetTypes()
            .Where(t => t.Namespace == sample.Namespace && t.GetCustomAttribute<MessagePackObjectAttribute>() is not null)
            .OrderBy(t => t.FullName, StringComparer.Ordinal)];

    /// <summary>One line per contract member and enum value, keyed by its wire identity (type and key).</summary>
    private static SortedDictionary<string, string> Describe(IEnumerable<Type> types)
    {
        var nullability = new NullabilityInfoContext();
        var lines = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var type in types)
        {
            if (type.IsEnum)
            {
                foreach (var value in Enum.GetValues(type))
                {
                    var key = $"{type.FullName}={Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture)}";
                    lines[key] = $"{key} {value}";
                }
                continue;
            }
            Assert.That(type.GetCustomAttribute<MessagePackObjectAttribute>()!.KeyAsPropertyName, Is.False, $"{type} must use integer keys");
            // The type's own line: a contract that disappears or is renamed (even one without members) is caught too.
            lines[type.FullName!] = $"{type.FullName} contract";
            var members = type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Cast<MemberInfo>()
                .Concat(type.GetFields(BindingFlags.Public | BindingFlags.Instance));
            foreach (var member in members)
            {
                if (member.GetCustomAttribute<IgnoreMemberAttribute>() is not null) continue;
                var keyAttribute = member.GetCustomAttribute<KeyAttribute>();
                Assert.That(keyAttribute?.IntKey, Is.Not.Null, $"{type.Name}.{member.Name} has no integer [Key]");
                var (memberType, info) = member is PropertyInfo p ? (p.PropertyType, nullability.Create(p)) : (((FieldInfo)member).FieldType, nullability.Create((FieldInfo)member));
                var key = $"{type.FullName}#{keyAttribute!.IntKey}";
                lines[key] = $"{key} {member.Name} {WireType(memberType, info)}";
            }
        }
        return lines;
    }

    private static string WireType(Type type, NullabilityInfo info)
    {
        if (Nullable.GetUnderlyingType(type) is { } underlying) return WireType(underlying, info) + "?";
        var name = type switch
        {
            _ when type == typeof(string) => "string",
            _ when type == typeof(bool) => "bool",
            _ when type == typeof(int) => "int32",
            _ when type == typeof(uint) => "uint32",
            _ when type == typeof(long) => "int64",
            _ when type == typeof(ulong) => "uint64",
            _ when type == typeof(double) => "float64",
            _ when type == typeof(byte[]) || type == typeof(ReadOnlyMemory<byte>) => "bytes",
            { IsGenericType: true } when type.GetGenericTypeDefinition() == typeof(List<>) =>
                $"list<{WireType(type.GetGenericArguments()[0], info.GenericTypeArguments[0])}>",
            { IsGenericType: true } when type.GetGenericTypeDefinition() == typeof(Dictionary<,>) =>
                $"map<{WireType(type.GetGenericArguments()[0], info.GenericTypeArguments[0])},{WireType(type.GetGenericArguments()[1], info.GenericTypeArguments[1])}>",
            _ => type.FullName!,
        };
        return !type.IsValueType && info.ReadState == NullabilityState.Nullable ? name + "?" : name;
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
