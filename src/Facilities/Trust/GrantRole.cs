namespace P2PInference.Facilities.Trust;

/// <summary>What a <see cref="RoleGrant"/> lets its holder act as. The values are the wire encoding: never renumber.</summary>
public enum GrantRole : byte
{
    Auth = 1,
    Gateway = 2,
    Processor = 3,
}

/// <summary>The roles' names as operators type them (<c>auth</c>, <c>gateway</c>, <c>processor</c>).</summary>
public static class GrantRoles
{
    public static string Name(this GrantRole role) => role switch
    {
        GrantRole.Auth => "auth",
        GrantRole.Gateway => "gateway",
        GrantRole.Processor => "processor",
        _ => $"role {(byte)role}",
    };

    public static bool TryParse(string? text, out GrantRole role)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case "auth":
                role = GrantRole.Auth;
                return true;
            case "gateway":
                role = GrantRole.Gateway;
                return true;
            case "processor":
                role = GrantRole.Processor;
                return true;
            default:
                role = default;
                return false;
        }
    }

    internal static bool IsDefined(byte value) => value is >= (byte)GrantRole.Auth and <= (byte)GrantRole.Processor;
}
