using System.Collections;
using System.Collections.Concurrent;
using System.Reflection;
using MessagePack;
using P2PInference.Facilities.Encoding;

namespace P2PInference.Facilities.Rpc;

/// <summary>
/// Gives a decoded contract the values its type promises: MessagePack turns a nil on the wire into
/// null even for a member declared non-nullable (<c>string</c>, <c>List&lt;T&gt;</c>, <c>byte[]</c>),
/// where protobuf had no null at all. Nil there becomes the empty value, as an absent protobuf field
/// did; nil inside a list or map has no empty value that means anything and is refused.
/// </summary>
internal static class WireDefaults
{
    private static readonly ConcurrentDictionary<Type, Member[]> Members = new();

    public static void Fill(object message)
    {
        foreach (var member in Members.GetOrAdd(message.GetType(), Describe))
        {
            var value = member.Property.GetValue(message);
            switch (member.Kind)
            {
                case Kind.String when value is null:
                    member.Property.SetValue(message, "");
                    break;
                case Kind.Bytes when value is null:
                    member.Property.SetValue(message, Array.Empty<byte>());
                    break;
                case Kind.List or Kind.Map when value is null:
                case Kind.Contract when value is null && !member.Nullable:
                    member.Property.SetValue(message, Activator.CreateInstance(member.Property.PropertyType));
                    break;
                case Kind.List:
                    foreach (var item in (IList)value)
                    {
                        if (item is null) throw Nil(message, member);
                        if (member.ElementIsContract) Fill(item);
                    }
                    break;
                case Kind.Map:
                    foreach (DictionaryEntry entry in (IDictionary)value)
                        if (entry.Value is null) throw Nil(message, member);
                    break;
                case Kind.Contract when value is not null:
                    Fill(value);
                    break;
            }
        }
    }

    private static MalformedMessageException Nil(object message, Member member) =>
        new($"nil element in {message.GetType().Name}.{member.Property.Name}");

    private static Member[] Describe(Type type)
    {
        var nullability = new NullabilityInfoContext();
        var members = new List<Member>();
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.GetCustomAttribute<KeyAttribute>() is null || !property.CanWrite) continue;
            var nullable = nullability.Create(property).WriteState == NullabilityState.Nullable;
            var t = property.PropertyType;
            Kind kind;
            var elementIsContract = false;
            if (t == typeof(string)) kind = nullable ? Kind.None : Kind.String;
            else if (t == typeof(byte[])) kind = nullable ? Kind.None : Kind.Bytes;
            else if (t.IsGenericType && t.GetGenericTypeDefinition() == typeof(List<>))
            {
                kind = Kind.List;
                elementIsContract = IsContract(t.GetGenericArguments()[0]);
            }
            else if (t.IsGenericType && t.GetGenericTypeDefinition() == typeof(Dictionary<,>)) kind = Kind.Map;
            else if (IsContract(t)) kind = Kind.Contract;
            else kind = Kind.None;
            if (kind != Kind.None) members.Add(new Member(property, kind, nullable, elementIsContract));
        }
        return [.. members];
    }

    private static bool IsContract(Type type) => type.GetCustomAttribute<MessagePackObjectAttribute>() is not null;

    private enum Kind
    {
        None,
        String,
        Bytes,
        List,
        Map,
        Contract,
    }

    private sealed record Member(PropertyInfo Property, Kind Kind, bool Nullable, bool ElementIsContract);
}
