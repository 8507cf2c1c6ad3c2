namespace P2PInference.Workers.Contracts.Inference;

/// <summary>The roles a chat message may have, as OpenAI's chat API spells them.</summary>
public static class InferMessageRoles
{
    public const string System = "system";
    public const string User = "user";
    public const string Assistant = "assistant";

    public static bool IsKnown(string role) => role is System or User or Assistant;
}
