using System.ComponentModel;
using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.Configuration;

namespace P2PInference.Workers.Hosting;

/// <summary>
/// Binds a configuration section onto an options object like Microsoft's binder, but collects a
/// clear line for every mistake instead of stopping at the first: unknown settings (typos), values
/// of the wrong type, sections where a value belongs. Lists take either indexed children (JSON
/// arrays) or one comma-separated value (handy in environment variables); a value replaces the
/// children, so a command-line list replaces a file's instead of merging with it by index.
/// </summary>
internal static class ConfigurationBinding
{
    public static T Bind<T>(IConfigurationSection section, List<string> errors)
        where T : new()
    {
        var target = new T();
        BindInto(target, section, section.Path, errors);
        return target;
    }

    /// <summary>The names of the settings the type takes, as they appear in configuration.</summary>
    public static IReadOnlyList<PropertyInfo> Settings(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.SetMethod is { IsPublic: true } && p.GetIndexParameters().Length == 0)
            .ToArray();

    public static void BindInto(object target, IConfiguration section, string path, List<string> errors)
    {
        var settings = Settings(target.GetType()).ToDictionary(p => p.Name, StringComparer.OrdinalIgnoreCase);
        foreach (var child in section.GetChildren())
        {
            if (!settings.TryGetValue(child.Key, out var property))
            {
                errors.Add($"{path}:{child.Key} is not a known setting (known: {string.Join(", ", settings.Keys.Order(StringComparer.Ordinal))})");
                continue;
            }

            // The property's own spelling, whatever the case of the source (environment variables are often upper-case).
            var childPath = path + ":" + property.Name;
            if (TryConvert(property.PropertyType, child, childPath, property.GetValue(target), errors, out var value))
                property.SetValue(target, value);
        }
    }

    private static bool TryConvert(Type type, IConfigurationSection section, string path, object? current, List<string> errors, out object? value)
    {
        value = null;
        if (ListElementType(type) is { } element)
            return TryConvertList(type, element, section, path, errors, out value);

        var underlying = Nullable.GetUnderlyingType(type) ?? type;
        if (IsScalar(underlying))
        {
            // Children mean some layer wrote a section here, even if a lower layer holds a value.
            if (section.Value is null || section.GetChildren().Any())
            {
                errors.Add($"{path} must be a single value, not a section");
                return false;
            }

            if (section.Value.Length == 0 && (Nullable.GetUnderlyingType(type) is not null || !type.IsValueType)) return true;
            return TryConvertScalar(underlying, section.Value, path, errors, out value);
        }

        if (section.Value is not null)
        {
            errors.Add($"{path} must be a section of settings, not the value '{section.Value}'");
            return false;
        }

        var nested = current ?? Activator.CreateInstance(underlying);
        if (nested is null) return false;
        BindInto(nested, section, path, errors);
        value = nested;
        return true;
    }

    private static bool TryConvertList(Type listType, Type element, IConfigurationSection section, string path, List<string> errors, out object? value)
    {
        value = null;
        var items = new List<(string Path, string Text)>();
        if (section.Value is { } joined)
        {
            var parts = joined.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            for (var i = 0; i < parts.Length; i++) items.Add(($"{path}[{i}]", parts[i]));
        }
        else
        {
            foreach (var child in section.GetChildren())
            {
                if (!int.TryParse(child.Key, NumberStyles.None, CultureInfo.InvariantCulture, out var index))
                {
                    errors.Add($"{path} must be a list; '{child.Key}' is not an index");
                    return false;
                }

                if (child.Value is null)
                {
                    errors.Add($"{path}[{index}] must be a single value, not a section");
                    return false;
                }

                items.Add(($"{path}[{index}]", child.Value));
            }
        }

        var list = (System.Collections.IList)Activator.CreateInstance(typeof(List<>).MakeGenericType(element))!;
        var ok = true;
        foreach (var (itemPath, text) in items)
        {
            if (TryConvertScalar(element, text, itemPath, errors, out var item)) list.Add(item);
            else ok = false;
        }

        if (!ok) return false;
        if (listType.IsArray)
        {
            var array = Array.CreateInstance(element, list.Count);
            list.CopyTo(array, 0);
            value = array;
        }
        else
        {
            value = list;
        }

        return true;
    }

    private static bool TryConvertScalar(Type type, string text, string path, List<string> errors, out object? value)
    {
        value = null;
        if (type == typeof(string))
        {
            value = text;
            return true;
        }

        if (type.IsEnum)
        {
            // Only names: Enum.TryParse would take "7" or "Server, Client" as well.
            var name = Enum.GetNames(type).FirstOrDefault(n => string.Equals(n, text.Trim(), StringComparison.OrdinalIgnoreCase));
            if (name is not null)
            {
                value = Enum.Parse(type, name);
                return true;
            }

            errors.Add($"{path}: '{text}' is not one of {string.Join(", ", Enum.GetNames(type))}");
            return false;
        }

        // TimeSpan.Parse reads a bare number as days: "CachePeriod": 30 would mean 30 days, not the 30
        // seconds an operator likely meant. Every accepted duration has a colon (00:00:30, 1.00:00:00).
        if (type == typeof(TimeSpan) && !text.Contains(':', StringComparison.Ordinal))
        {
            errors.Add(double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out _)
                ? $"{path}: '{text}' is a bare number, which is ambiguous (it would be read as days); write {Describe(type)}, e.g. 00:00:30 for 30 seconds"
                : $"{path}: '{text}' is not {Describe(type)}");
            return false;
        }

        try
        {
            value = TypeDescriptor.GetConverter(type).ConvertFromInvariantString(text.Trim());
            return value is not null;
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException or NotSupportedException ||
                                  e.InnerException is FormatException or OverflowException)
        {
            errors.Add($"{path}: '{text}' is not {Describe(type)}");
            return false;
        }
    }

    private static bool IsScalar(Type type) =>
        type.IsPrimitive || type.IsEnum || type == typeof(string) || type == typeof(decimal) || type == typeof(TimeSpan) ||
        type == typeof(DateTimeOffset) || type == typeof(Uri);

    private static Type? ListElementType(Type type)
    {
        if (type.IsArray) return type.GetElementType();
        if (!type.IsGenericType) return null;
        var definition = type.GetGenericTypeDefinition();
        return definition == typeof(List<>) || definition == typeof(IReadOnlyList<>) || definition == typeof(IList<>) ||
               definition == typeof(IEnumerable<>) || definition == typeof(IReadOnlyCollection<>)
            ? type.GetGenericArguments()[0]
            : null;
    }

    private static string Describe(Type type) => type switch
    {
        _ when type == typeof(int) || type == typeof(long) || type == typeof(short) => "a whole number in range",
        _ when type == typeof(uint) || type == typeof(ulong) || type == typeof(ushort) || type == typeof(byte) => "a non-negative whole number in range",
        _ when type == typeof(bool) => "true or false",
        _ when type == typeof(double) || type == typeof(float) || type == typeof(decimal) => "a number",
        _ when type == typeof(TimeSpan) => "a duration like 00:05:00 (hh:mm:ss) or 1.00:00:00 (d.hh:mm:ss)",
        _ when type == typeof(Uri) => "a URI",
        _ => "a valid " + type.Name,
    };
}
