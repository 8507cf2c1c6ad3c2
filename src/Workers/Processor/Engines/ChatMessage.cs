namespace P2PInference.Workers.Processor.Engines;

/// <summary>One message of a chat-style prompt. Role is <c>system</c>, <c>user</c> or <c>assistant</c>.</summary>
public sealed record ChatMessage(string Role, string Content);
